-- Operations (issue 6): time indexes, rollups and the thresholds dashboards draw.
-- Names here are a public interface, like 001's: Grafana queries them.

-- Retention deletes by time and dashboards filter by time. On TimescaleDB
-- these are the indexes create_hypertable would make itself (same names, so
-- it reuses them); on plain PostgreSQL they keep batched DELETEs and panel
-- queries off sequential scans.
CREATE INDEX IF NOT EXISTS readings_time_idx ON readings (time DESC);
CREATE INDEX IF NOT EXISTS device_events_time_idx ON device_events (time DESC);
CREATE INDEX IF NOT EXISTS quarantine_received_at_idx ON quarantine (received_at DESC);

-- Rollups. These plain views are the portable definition: every backend has
-- them, so every panel works everywhere. Where the TimescaleDB licence has
-- continuous aggregates ('timescale'), the service replaces each view at
-- start with a continuous aggregate of the same name and columns
-- (ingest/retention.py), which is then kept longer than the raw rows.
-- The origin is time_bucket's (Monday 2000-01-03), so buckets line up on both.
CREATE OR REPLACE VIEW readings_5m AS
SELECT date_bin('5 minutes', time, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket,
       device_id,
       metric,
       avg(value) AS avg_value,
       min(value) AS min_value,
       max(value) AS max_value,
       count(*)   AS samples
FROM readings
GROUP BY 1, 2, 3;

-- Quarantined messages per hour by reason and format (the topic's channel
-- names the codec; a topic of the wrong shape has no trustworthy format).
CREATE OR REPLACE VIEW quarantine_1h AS
SELECT date_bin('1 hour', received_at, TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket,
       reason,
       CASE WHEN reason = 'bad_topic' THEN 'unknown'
            ELSE coalesce(nullif(split_part(topic, '/', 5), ''), 'unknown') END AS format,
       count(*) AS messages
FROM quarantine
GROUP BY 1, 2, 3;

-- The rule thresholds in force, written by the ingest service at every start
-- from the rules configuration it loaded (ingest/rule_thresholds.py), so the
-- Elder-detail dashboard draws the lines the rules really use. 'defaults'
-- holds every threshold; the other scopes only their overrides. The most
-- specific scope wins: device, then elder, then profile, then defaults.
CREATE TABLE IF NOT EXISTS rule_thresholds (
    scope      text             NOT NULL CHECK (scope IN ('defaults', 'profile', 'elder', 'device')),
    scope_id   text             NOT NULL DEFAULT '',  -- '' for defaults
    name       text             NOT NULL,             -- a rules.config.Thresholds field, e.g. hr_high_major_bpm
    value      double precision NOT NULL,
    written_at timestamptz      NOT NULL,
    PRIMARY KEY (scope, scope_id, name)
);
