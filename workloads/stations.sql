-- One run: a station reports a reading (the datapoint and the station's counter in one
-- transaction), then a dashboard reads that station's last ten seconds. pgbench's script
-- language (the README's "Your own workload"); schema in workloads/stations-schema.sql; the
-- `check:` line below runs after `workload run script` (unless --check replaces it).
--
-- check: SELECT (SELECT COALESCE(sum(readings), 0) FROM stations) = (SELECT count(*) FROM datapoints)

\set station random_zipfian(1, 100, 1.2)
\set reading random_gaussian(0, 1000, 2.5)
\set seq random(1, 1000000000)
BEGIN;
INSERT INTO datapoints (station_id, at, seq, reading) VALUES (:station, now(), :seq, :reading);
UPDATE stations SET readings = readings + 1, last_seen = now() WHERE id = :station;
COMMIT;
SELECT count(*), avg(reading) FROM datapoints WHERE station_id = :station AND at > now() - INTERVAL '10 seconds';
