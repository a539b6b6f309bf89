-- Merchant webhooks: endpoints, one delivery per (endpoint, event), every attempt recorded.
-- The delivery schedule lives here (not on Kafka retry topics): workers claim due rows with
-- FOR UPDATE SKIP LOCKED and a lease, so any number of processes can deliver.

CREATE TABLE webhook_endpoints (
    id                          TEXT PRIMARY KEY,         -- we_…
    merchant_id                 TEXT NOT NULL REFERENCES merchants(id),
    url                         TEXT NOT NULL,
    event_types                 TEXT[] NOT NULL DEFAULT '{}',  -- empty = every event type
    description                 TEXT NOT NULL DEFAULT '',
    enabled                     BOOLEAN NOT NULL DEFAULT true,
    -- The signing keys. HMAC needs the key itself, so it cannot be hashed; it is never logged
    -- and returned only by CreateWebhookEndpoint / RotateWebhookSecret.
    secret                      TEXT NOT NULL,
    previous_secret             TEXT,                     -- still signs until it expires
    previous_secret_expires_at  TIMESTAMPTZ,
    created_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at                  TIMESTAMPTZ
);
CREATE INDEX webhook_endpoints_merchant ON webhook_endpoints (merchant_id, created_at)
    WHERE deleted_at IS NULL;

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,                    -- whd_…
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints(id),
    merchant_id      TEXT NOT NULL,
    event_id         TEXT NOT NULL,                       -- evt_…; Triveni-Event-Id
    event_type       TEXT NOT NULL,
    payment_id       TEXT NOT NULL,
    sequence         BIGINT NOT NULL,                     -- Triveni-Sequence
    body             BYTEA NOT NULL,                      -- the exact JSON bytes sent (and signed)
    status           TEXT NOT NULL DEFAULT 'PENDING',     -- PENDING, RETRYING, DELIVERED, DEAD_LETTERED
    attempt_count    INT NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ,                         -- NULL once DELIVERED / DEAD_LETTERED
    lease_owner      TEXT,                                -- the worker sending it right now
    lease_until      TIMESTAMPTZ,
    last_error       TEXT NOT NULL DEFAULT '',
    redelivery_of    TEXT REFERENCES webhook_deliveries(id),  -- set by RedeliverWebhook
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at      TIMESTAMPTZ,
    CHECK (status IN ('PENDING', 'RETRYING', 'DELIVERED', 'DEAD_LETTERED'))
);
-- Exactly-once fan-out: Kafka may hand the same event to the fan-out consumer again.
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (endpoint_id, event_id)
    WHERE redelivery_of IS NULL;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status IN ('PENDING', 'RETRYING');
-- The ordering check: an earlier unfinished delivery of the same payment to the same endpoint.
CREATE INDEX webhook_deliveries_unfinished ON webhook_deliveries (endpoint_id, payment_id, sequence)
    WHERE status IN ('PENDING', 'RETRYING') AND redelivery_of IS NULL;
CREATE INDEX webhook_deliveries_merchant ON webhook_deliveries (merchant_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_payment ON webhook_deliveries (payment_id);

CREATE TABLE webhook_delivery_attempts (
    delivery_id      TEXT NOT NULL REFERENCES webhook_deliveries(id),
    number           INT NOT NULL,
    attempted_at     TIMESTAMPTZ NOT NULL,
    http_status      INT NOT NULL DEFAULT 0,              -- 0: no response (connect error, timeout)
    error            TEXT NOT NULL DEFAULT '',
    latency_ms       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (delivery_id, number)
);
