-- Telemetry storage. These table and column names are a public interface:
-- Grafana dashboards and operators query them directly.
--
-- Identity (the unique indexes) is what makes MQTT redelivery harmless: a
-- message delivered twice yields the same rows, and ON CONFLICT DO NOTHING
-- keeps one. On TimescaleDB a unique index must contain the time column,
-- which is why every identity includes it.

-- Numeric measurements: one row per canonical heart_rate, spo2, body_temp or
-- battery object. Metric names carry their unit.
CREATE TABLE IF NOT EXISTS readings (
    time        timestamptz      NOT NULL,  -- device time of the measurement
    device_id   text             NOT NULL,
    metric      text             NOT NULL,  -- heart_rate_bpm, spo2_pct, body_temp_c, battery_pct
    value       double precision NOT NULL,
    received_at timestamptz      NOT NULL,  -- when the ingest service received it
    msg_id      text             NOT NULL DEFAULT ''  -- the sender's msg_id, '' when none
);
CREATE UNIQUE INDEX IF NOT EXISTS readings_identity
    ON readings (device_id, metric, time, msg_id);

-- Discrete events: panic, fall, cancel, heartbeat, worn, location... One row
-- per canonical object.
CREATE TABLE IF NOT EXISTS device_events (
    time        timestamptz NOT NULL,  -- device time, or received time when time_source = 'received'
    device_id   text        NOT NULL,
    gateway_id  text        NOT NULL,
    kind        text        NOT NULL,
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- the kind's value fields
    event_key   text        NOT NULL,  -- msg_id, or a digest of the event's content
    msg_id      text,
    time_source text        NOT NULL DEFAULT 'device',  -- 'device' | 'received'
    device_time timestamptz,           -- the device's own (distrusted) time, when not used
    flags       text[]      NOT NULL DEFAULT '{}',  -- clock_skew, bad_timestamp, invalid_fields...
    received_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS device_events_identity
    ON device_events (device_id, time, kind, event_key);
CREATE INDEX IF NOT EXISTS device_events_kind_time
    ON device_events (kind, time DESC);

-- Everything that could not be stored as readings or events, with its raw
-- bytes, so nothing is silently lost and every rejection can be replayed.
CREATE TABLE IF NOT EXISTS quarantine (
    received_at        timestamptz NOT NULL,
    topic              text        NOT NULL,
    payload            bytea       NOT NULL,
    payload_sha256     bytea       NOT NULL,
    reason             text        NOT NULL,  -- closed vocabulary, see README
    detail             text        NOT NULL,
    gateway_id         text,
    device_id          text,
    duplicate_delivery boolean     NOT NULL DEFAULT false  -- the broker's DUP flag
);
CREATE INDEX IF NOT EXISTS quarantine_payload
    ON quarantine (payload_sha256, received_at);
CREATE INDEX IF NOT EXISTS quarantine_reason_time
    ON quarantine (reason, received_at DESC);
