-- The data-collection application of the seed runbook: stations that report datapoints,
-- and a dashboard that reads each station's recent window. The same text runs on
-- PostgreSQL 15 and CockroachDB v20.1 (`roachlab workload init script --file` runs it as it
-- stands; it replaces any earlier tables).
DROP TABLE IF EXISTS datapoints;
DROP TABLE IF EXISTS stations;

CREATE TABLE stations (
    id        INT8 PRIMARY KEY,
    region    TEXT NOT NULL,
    -- Datapoints this station has reported: kept in the same transaction as each insert,
    -- so `sum(readings)` equals the number of datapoints whatever faults the run saw.
    readings  INT8 NOT NULL DEFAULT 0,
    last_seen TIMESTAMPTZ
);

CREATE TABLE datapoints (
    station_id INT8 NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    seq        INT8 NOT NULL,
    reading    INT8 NOT NULL,
    PRIMARY KEY (station_id, at, seq)
);

INSERT INTO stations (id, region) SELECT i, 'region-' || (i % 4)::TEXT FROM generate_series(1, 100) AS g(i);
