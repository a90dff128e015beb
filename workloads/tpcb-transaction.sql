-- pgbench's built-in "tpcb-like" transaction, between BEGIN and COMMIT, in pgbench's script
-- syntax: :aid (1..100000×scale), :bid (1..scale), :tid (1..10×scale), :delta (-5000..5000).
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
