-- roachlab bank: the schema of `cockroach workload bank` (bank.bank) plus a history of every
-- transfer (bank.transfers), written in the same transaction as the balance update, so the
-- check can prove that balances equal their history and that no acknowledged transfer was
-- lost. `bank` is a database on CockroachDB and a schema on PostgreSQL; roachlab creates it
-- before running this file. Every balance starts at 0.
DROP TABLE IF EXISTS bank.transfers;
DROP TABLE IF EXISTS bank.bank;
CREATE TABLE bank.bank (
    id      BIGINT PRIMARY KEY,
    balance BIGINT NOT NULL DEFAULT 0,
    payload TEXT
);
CREATE TABLE bank.transfers (
    id         UUID PRIMARY KEY,
    from_id    BIGINT NOT NULL,
    to_id      BIGINT NOT NULL,
    amount     BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
