-- One bank transfer, one transaction: the update `cockroach workload bank` runs, plus its
-- history row. $1 from, $2 to, $3 amount, $4 transfer id.
UPDATE bank.bank SET balance = CASE id WHEN $1 THEN balance - $3 WHEN $2 THEN balance + $3 END WHERE id IN ($1, $2);
INSERT INTO bank.transfers (id, from_id, to_id, amount) VALUES ($4, $1, $2, $3);
