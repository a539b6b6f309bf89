-- Core schema: merchants, API keys, payments, attempts, refunds, audit log, outbox, idempotency.
-- Amounts are BIGINT paise. No card numbers anywhere (RBI card-on-file rule).

CREATE TABLE merchants (
    id              TEXT PRIMARY KEY,                 -- mer_…
    name            TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,                 -- key_…
    merchant_id     TEXT NOT NULL REFERENCES merchants(id),
    key_hash        TEXT NOT NULL UNIQUE,             -- sha256 hex of the full key; the key is never stored
    prefix          TEXT NOT NULL,                    -- first chars, for humans to recognise a key
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at      TIMESTAMPTZ
);

CREATE TABLE payments (
    id                    TEXT PRIMARY KEY,           -- pay_…
    merchant_id           TEXT NOT NULL REFERENCES merchants(id),
    idempotency_key       TEXT NOT NULL,
    amount_minor          BIGINT NOT NULL CHECK (amount_minor > 0),
    currency              CHAR(3) NOT NULL,
    status                TEXT NOT NULL,
    method                JSONB NOT NULL,             -- MethodSummary: type, vpa, bank_code, network, last4, token…
    customer              JSONB NOT NULL DEFAULT '{}',
    ip_address            TEXT NOT NULL DEFAULT '',
    country               TEXT NOT NULL DEFAULT '',
    description           TEXT NOT NULL DEFAULT '',
    return_url            TEXT NOT NULL DEFAULT '',
    metadata              JSONB NOT NULL DEFAULT '{}',
    preferred_connector   TEXT NOT NULL DEFAULT '',
    connector             TEXT NOT NULL DEFAULT '',
    connector_payment_id  TEXT NOT NULL DEFAULT '',
    redirect_url          TEXT NOT NULL DEFAULT '',
    fraud                 JSONB NOT NULL DEFAULT '{}',
    routing               JSONB NOT NULL DEFAULT '{}',
    amount_refunded_minor BIGINT NOT NULL DEFAULT 0 CHECK (amount_refunded_minor >= 0),
    failure_code          TEXT NOT NULL DEFAULT '',
    failure_message       TEXT NOT NULL DEFAULT '',
    version               BIGINT NOT NULL DEFAULT 1,
    next_sync_at          TIMESTAMPTZ,                -- when the status-sync worker should look again
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (amount_refunded_minor <= amount_minor)
);
CREATE INDEX payments_merchant_created ON payments (merchant_id, created_at DESC, id DESC);
CREATE INDEX payments_merchant_status ON payments (merchant_id, status, created_at DESC);
CREATE INDEX payments_connector_ref ON payments (connector, connector_payment_id);
CREATE INDEX payments_next_sync ON payments (next_sync_at) WHERE next_sync_at IS NOT NULL;

-- One row per (merchant, idempotency key, operation): the database, not a lock, guarantees
-- that concurrent duplicates produce one result.
CREATE TABLE idempotency_records (
    merchant_id     TEXT NOT NULL REFERENCES merchants(id),
    operation       TEXT NOT NULL,                    -- create_payment, cancel_payment, refund_payment…
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,                    -- sha256 of the canonical request
    resource_id     TEXT NOT NULL,                    -- the payment / refund it produced
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, operation, idempotency_key)
);

CREATE TABLE payment_attempts (
    id                    TEXT PRIMARY KEY,           -- att_…; sent to the PSP as receipt/txnid
    payment_id            TEXT NOT NULL REFERENCES payments(id),
    number                INT NOT NULL,
    connector             TEXT NOT NULL,
    connector_payment_id  TEXT NOT NULL DEFAULT '',
    status                TEXT NOT NULL,              -- PENDING, SUCCEEDED, FAILED, UNKNOWN
    error_code            TEXT NOT NULL DEFAULT '',
    error_message         TEXT NOT NULL DEFAULT '',
    latency_ms            BIGINT NOT NULL DEFAULT 0,
    references_json       JSONB NOT NULL DEFAULT '{}',
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (payment_id, number)
);
CREATE INDEX payment_attempts_ref ON payment_attempts (connector, connector_payment_id);

CREATE TABLE refunds (
    id                    TEXT PRIMARY KEY,           -- rfnd_…
    payment_id            TEXT NOT NULL REFERENCES payments(id),
    merchant_id           TEXT NOT NULL REFERENCES merchants(id),
    amount_minor          BIGINT NOT NULL CHECK (amount_minor > 0),
    currency              CHAR(3) NOT NULL,
    status                TEXT NOT NULL,
    reason                TEXT NOT NULL DEFAULT '',
    connector             TEXT NOT NULL,
    connector_refund_id   TEXT NOT NULL DEFAULT '',
    failure_code          TEXT NOT NULL DEFAULT '',
    failure_message       TEXT NOT NULL DEFAULT '',
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX refunds_payment ON refunds (payment_id);

-- Append-only: every state change with before/after and who caused it.
CREATE TABLE audit_log (
    id              BIGSERIAL PRIMARY KEY,
    merchant_id     TEXT NOT NULL,
    payment_id      TEXT NOT NULL,
    event_id        TEXT NOT NULL UNIQUE,             -- the outbox event of the same change
    action          TEXT NOT NULL,                    -- e.g. payment.created, webhook.ignored
    actor           TEXT NOT NULL,                    -- api:<key id>, webhook:<account>, worker:sync…
    before_status   TEXT,
    after_status    TEXT,
    details         JSONB NOT NULL DEFAULT '{}',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_payment ON audit_log (payment_id, id);
CREATE RULE audit_log_no_update AS ON UPDATE TO audit_log DO INSTEAD NOTHING;
CREATE RULE audit_log_no_delete AS ON DELETE TO audit_log DO INSTEAD NOTHING;

-- Transactional outbox: written in the same transaction as the change it describes.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    event_id        TEXT NOT NULL UNIQUE,             -- evt_…; Kafka consumers dedupe on it
    topic           TEXT NOT NULL,
    key             TEXT NOT NULL,                    -- payment id: keeps per-payment order in Kafka
    event_type      TEXT NOT NULL,
    payload         BYTEA NOT NULL,                   -- serialized triveni.v1.PaymentEvent
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at    TIMESTAMPTZ,
    attempts        INT NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Webhook deliveries already applied (per connector account), so duplicates are no-ops.
CREATE TABLE webhook_receipts (
    account         TEXT NOT NULL,
    dedupe_id       TEXT NOT NULL,
    payment_id      TEXT NOT NULL DEFAULT '',
    received_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account, dedupe_id)
);
