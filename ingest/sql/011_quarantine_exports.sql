-- Which quarantined messages an operator exported for replay (`carewatch quarantine export --mark`),
-- so that a second export after the same fix skips them. The quarantine rows themselves stay as
-- they were: they are the record of what arrived.
CREATE TABLE IF NOT EXISTS quarantine_exports (
    received_at    timestamptz NOT NULL,
    topic          text        NOT NULL,
    payload_sha256 bytea       NOT NULL,
    exported_at    timestamptz NOT NULL,
    file           text        NOT NULL,
    PRIMARY KEY (payload_sha256, topic, received_at)
);
