-- Routing administration: per-merchant routing policies (versioned, reloaded through NOTIFY),
-- admin API keys, an audit trail of admin actions, and the Kafka status-sync schedule.

-- Every version of a merchant's routing policy is kept; the highest version is the live one.
-- A merchant without a row routes by the global policy (TRIVENI_ROUTING_FILE or the built-in
-- seed rule).
CREATE TABLE routing_policies (
    merchant_id     TEXT NOT NULL REFERENCES merchants(id),
    version         BIGINT NOT NULL CHECK (version > 0),
    policy          JSONB NOT NULL,                   -- the document (docs/routing.md)
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_by      TEXT NOT NULL,                    -- api:<key id>
    PRIMARY KEY (merchant_id, version)
);

-- Every server process LISTENs on routing_policy and drops its cached copy of the merchant's
-- policy when a new version is committed (payload: the merchant id).
CREATE FUNCTION routing_policies_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('routing_policy', NEW.merchant_id);
    RETURN NEW;
END;
$$;
CREATE TRIGGER routing_policies_notify AFTER INSERT ON routing_policies
    FOR EACH ROW EXECUTE FUNCTION routing_policies_notify();

-- Keys flagged admin may change platform-wide routing state (connector overrides) and routing
-- policies; every other key may only read them.
ALTER TABLE api_keys ADD COLUMN is_admin BOOLEAN NOT NULL DEFAULT false;

-- Append-only record of administrative actions that are not payment changes.
CREATE TABLE admin_audit (
    id              BIGSERIAL PRIMARY KEY,
    merchant_id     TEXT NOT NULL,                    -- the key's merchant
    actor           TEXT NOT NULL,                    -- api:<key id>
    action          TEXT NOT NULL,                    -- connector.override, routing_policy.set
    target          TEXT NOT NULL,                    -- account name or merchant id
    details         JSONB NOT NULL DEFAULT '{}',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX admin_audit_target ON admin_audit (target, id);
CREATE RULE admin_audit_no_update AS ON UPDATE TO admin_audit DO INSTEAD NOTHING;
CREATE RULE admin_audit_no_delete AS ON DELETE TO admin_audit DO INSTEAD NOTHING;

-- The live Kafka status-sync message of each pending payment. Scheduling a new check bumps the
-- ticket, so a superseded or redelivered message (its ticket is older) is dropped.
CREATE TABLE payment_sync_schedule (
    payment_id      TEXT PRIMARY KEY,
    ticket          BIGINT NOT NULL,
    attempt         INT NOT NULL,                     -- rung of the retry ladder (0 = first)
    due_at          TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
