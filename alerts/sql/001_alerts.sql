-- Alerts, their audit trail, held falls and the outbound notification outbox.
-- Table and column names are a public interface (dashboards, dispatch consoles).

CREATE TABLE IF NOT EXISTS alerts (
    id                 bigserial PRIMARY KEY,
    device_id          text        NOT NULL,
    rule               text        NOT NULL,  -- panic, fall, heart_rate_high, device_silent...
    severity           text        NOT NULL CHECK (severity IN ('critical', 'major', 'warning')),
    priority           integer     NOT NULL,  -- higher is more urgent; the queue's first key
    state              text        NOT NULL DEFAULT 'open'
                       CHECK (state IN ('open', 'acknowledged', 'dispatched', 'resolved', 'cleared')),
    emergency          boolean     NOT NULL,  -- 15 min on-site promise; else 30 min general help
    triggered_at       timestamptz NOT NULL,  -- time of the trigger: device time, or receive time for formats without one
    raised_at          timestamptz NOT NULL,  -- when Carewatch raised it
    sla_due_at         timestamptz NOT NULL,
    dedup_key          text        NOT NULL,  -- one active alert per key
    occurrence_count   integer     NOT NULL DEFAULT 1,
    last_occurrence_at timestamptz NOT NULL,
    evidence           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    claimed_by         text,
    claimed_at         timestamptz,
    acknowledged_by    text,
    acknowledged_at    timestamptz,
    dispatched_by      text,
    dispatched_at      timestamptz,
    resolved_by        text,
    resolved_at        timestamptz,
    resolution_note    text,
    cleared_at         timestamptz,
    escalation_level   integer     NOT NULL DEFAULT 0,
    next_escalation_at timestamptz,
    sla_breached_at    timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_active_per_key
    ON alerts (dedup_key) WHERE state IN ('open', 'acknowledged', 'dispatched');
CREATE INDEX IF NOT EXISTS alerts_queue
    ON alerts (priority DESC, sla_due_at) WHERE state = 'open';
CREATE INDEX IF NOT EXISTS alerts_device_time ON alerts (device_id, raised_at DESC);

-- Every press, fall or reading episode that fed an alert, once: redelivery
-- of the same event never counts twice, even after the alert was resolved.
CREATE TABLE IF NOT EXISTS alert_occurrences (
    alert_id       bigint      NOT NULL REFERENCES alerts (id),
    dedup_key      text        NOT NULL,
    occurrence_key text        NOT NULL,
    observed_at    timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL,
    PRIMARY KEY (alert_id, occurrence_key)
);
CREATE UNIQUE INDEX IF NOT EXISTS alert_occurrences_identity
    ON alert_occurrences (dedup_key, occurrence_key);

-- Append-only audit trail: who did what, when.
CREATE TABLE IF NOT EXISTS alert_events (
    id         bigserial   PRIMARY KEY,
    alert_id   bigint      NOT NULL REFERENCES alerts (id),
    at         timestamptz NOT NULL,
    actor      text        NOT NULL,  -- 'carewatch' or the dispatcher's name
    action     text        NOT NULL,  -- raised, occurrence, upgraded, claimed, acknowledged...
    from_state text,
    to_state   text,
    note       text,
    detail     jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS alert_events_alert ON alert_events (alert_id, id);

CREATE OR REPLACE FUNCTION carewatch_alert_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alert_events is append-only';
END;
$$;
DROP TRIGGER IF EXISTS alert_events_append_only ON alert_events;
CREATE TRIGGER alert_events_append_only BEFORE UPDATE OR DELETE ON alert_events
    FOR EACH ROW EXECUTE FUNCTION carewatch_alert_events_append_only();

-- Falls waiting out their cancel window, and how each ended: a cancelled
-- fall is recorded here, not as an alert.
CREATE TABLE IF NOT EXISTS held_events (
    device_id      text        NOT NULL,
    rule           text        NOT NULL,
    occurrence_key text        NOT NULL,
    device_time    timestamptz NOT NULL,
    received_at    timestamptz NOT NULL,
    due_at         timestamptz NOT NULL,
    status         text        NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'cancelled', 'raised')),
    resolved_at    timestamptz,
    PRIMARY KEY (device_id, occurrence_key)
);
CREATE INDEX IF NOT EXISTS held_events_pending ON held_events (due_at) WHERE status = 'pending';

-- Alerts to publish on carewatch/v1/alerts/{severity}: written in the same
-- transaction as the alert, published at least once afterwards.
CREATE TABLE IF NOT EXISTS alert_outbox (
    id           bigserial   PRIMARY KEY,
    alert_id     bigint      NOT NULL REFERENCES alerts (id),
    topic        text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL,
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS alert_outbox_pending ON alert_outbox (id) WHERE published_at IS NULL;

-- Wake dispatchers and the publisher when something needs attention; the
-- payload is the alert's id. NOTIFY is delivered at COMMIT, never before.
CREATE OR REPLACE FUNCTION carewatch_alerts_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('carewatch_alerts', NEW.alert_id::text);
    RETURN NEW;
END;
$$;
DROP TRIGGER IF EXISTS alert_outbox_notify ON alert_outbox;
CREATE TRIGGER alert_outbox_notify AFTER INSERT ON alert_outbox
    FOR EACH ROW EXECUTE FUNCTION carewatch_alerts_notify();
