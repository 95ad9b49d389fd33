-- The device registry: who wears which device, and which gateway may speak
-- for it. Table and column names are a public interface (dashboards,
-- `carewatch devices list`, call-centre tools).
--
-- Personal data is kept to the minimum the service needs to decide how
-- closely to watch someone: no address, no phone, no medical record.

CREATE TABLE IF NOT EXISTS elders (
    elder_id     text        PRIMARY KEY CHECK (elder_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    display_name text        NOT NULL,
    living_alone boolean     NOT NULL DEFAULT false,
    birth_year   integer     CHECK (birth_year BETWEEN 1890 AND 2100),
    -- standard | elevated | high: high (or living alone and 85+) halves the silence timeout
    risk_tier    text        NOT NULL DEFAULT 'standard' CHECK (risk_tier IN ('standard', 'elevated', 'high')),
    timezone     text        NOT NULL DEFAULT 'UTC',  -- IANA name, for local-time views
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS devices (
    device_id            text        PRIMARY KEY CHECK (device_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    gateway_id           text        NOT NULL CHECK (gateway_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    profile              text        NOT NULL,  -- wearable, pendant, fixed_terminal, sensor (rules/config.py)
    model                text,                  -- free text: vendor and model
    elder_id             text        REFERENCES elders (elder_id),
    -- seconds between the device's own check-ins; NULL: the profile's default
    heartbeat_interval_s integer     CHECK (heartbeat_interval_s > 0),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS devices_elder ON devices (elder_id);

-- What the ingest service last saw of each device, written a few seconds
-- behind the messages (the rule engine's own state is authoritative; this is
-- for people and dashboards, and to restore silence clocks after a restart).
CREATE TABLE IF NOT EXISTS device_presence (
    device_id         text        PRIMARY KEY,
    gateway_id        text        NOT NULL,  -- from the topic of the last message
    last_seen_at      timestamptz NOT NULL,  -- service clock
    silence_timeout_s double precision NOT NULL,  -- the device_silent rule's limit for it
    battery_pct       double precision,
    battery_at        timestamptz,
    worn              boolean,
    worn_at           timestamptz,
    link              text,                  -- 'online' | 'offline' as the device or its gateway last said
    link_at           timestamptz
);

-- One row per device known either way: registered, or seen.
CREATE OR REPLACE VIEW device_status AS
SELECT
    coalesce(d.device_id, p.device_id)                          AS device_id,
    d.device_id IS NOT NULL                                     AS registered,
    coalesce(d.gateway_id, p.gateway_id)                        AS gateway_id,
    d.profile,
    d.elder_id,
    e.display_name                                              AS elder_name,
    p.last_seen_at,
    p.silence_timeout_s,
    CASE
        WHEN p.last_seen_at IS NULL THEN 'never_seen'
        WHEN p.link = 'offline' AND p.link_at >= p.last_seen_at THEN 'offline'
        WHEN now() - p.last_seen_at > make_interval(secs => p.silence_timeout_s) THEN 'silent'
        ELSE 'online'
    END                                                         AS status,
    p.battery_pct,
    p.battery_at,
    p.worn
FROM devices d
FULL JOIN device_presence p ON p.device_id = d.device_id
LEFT JOIN elders e ON e.elder_id = d.elder_id;
