#!/bin/sh
# Runs once, when the TimescaleDB container initialises an empty data volume.
# carewatch: owns the schema (the ingest service migrates it at start).
# carewatch_grafana: read-only, for the dashboards; it gets SELECT on every
# table and view carewatch creates, now and later.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v carewatch_pw="$CAREWATCH_DB_PASSWORD" -v grafana_pw="$CAREWATCH_GRAFANA_DB_PASSWORD" <<'SQL'
CREATE ROLE carewatch LOGIN PASSWORD :'carewatch_pw';
CREATE ROLE carewatch_grafana LOGIN PASSWORD :'grafana_pw';
GRANT CONNECT, CREATE, TEMPORARY ON DATABASE carewatch TO carewatch;
GRANT CONNECT ON DATABASE carewatch TO carewatch_grafana;
GRANT CREATE, USAGE ON SCHEMA public TO carewatch;
GRANT USAGE ON SCHEMA public TO carewatch_grafana;
ALTER DEFAULT PRIVILEGES FOR ROLE carewatch IN SCHEMA public GRANT SELECT ON TABLES TO carewatch_grafana;
-- The extension needs a superuser to create; do it here so the service finds it.
CREATE EXTENSION IF NOT EXISTS timescaledb;
SQL
