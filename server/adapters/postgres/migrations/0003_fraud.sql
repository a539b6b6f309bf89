-- Fraud engine: per-merchant blocklist, versioned rule settings, indexes for history signals.

-- Values are stored normalised (lower-case emails and VPAs, +91XXXXXXXXXX phones, canonical
-- IP / CIDR text). Removing an entry sets removed_at; rows are never deleted (audit trail).
CREATE TABLE fraud_blocklist (
    id              TEXT PRIMARY KEY,                 -- fbl_…
    merchant_id     TEXT NOT NULL REFERENCES merchants(id),
    kind            TEXT NOT NULL CHECK (kind IN ('IP', 'VPA', 'EMAIL', 'PHONE', 'CARD_TOKEN',
                                                  'CARD_BIN', 'CUSTOMER_ID')),
    value           TEXT NOT NULL CHECK (value <> ''),
    -- IP entries as inet, so a payment's address matches a range with `network >>= ip`.
    network         INET GENERATED ALWAYS AS (CASE WHEN kind = 'IP' THEN value::inet END) STORED,
    reason          TEXT NOT NULL DEFAULT '',
    source          TEXT NOT NULL DEFAULT '',         -- api:<key id>, report_fraud:<payment id>…
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at      TIMESTAMPTZ,                      -- NULL = never expires
    removed_at      TIMESTAMPTZ
);
-- One active entry per (merchant, kind, value); expired-but-not-removed entries are retired
-- (removed_at set) by the repository before a new one is added.
CREATE UNIQUE INDEX fraud_blocklist_active ON fraud_blocklist (merchant_id, kind, value)
    WHERE removed_at IS NULL;
CREATE INDEX fraud_blocklist_networks ON fraud_blocklist USING gist (network inet_ops)
    WHERE removed_at IS NULL AND kind = 'IP';
CREATE INDEX fraud_blocklist_listing ON fraud_blocklist (merchant_id, created_at DESC, id DESC);

-- Every version of a merchant's settings is kept: the table is its own audit log.
CREATE TABLE fraud_settings (
    merchant_id     TEXT NOT NULL REFERENCES merchants(id),
    version         BIGINT NOT NULL CHECK (version > 0),
    settings        JSONB NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_by      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (merchant_id, version)
);

-- History signals read recent payments by customer and by IP, and recent failures.
CREATE INDEX payments_fraud_customer ON payments (merchant_id, (customer->>'id'), created_at DESC);
CREATE INDEX payments_fraud_ip ON payments (merchant_id, ip_address, created_at DESC);
CREATE INDEX payments_fraud_failed ON payments (merchant_id, created_at DESC)
    WHERE status = 'FAILED';
