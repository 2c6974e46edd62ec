-- One outcome per hold, decided in PostgreSQL: a confirm's order and a recovery sweep's (or a
-- cancel's) rollback race for the same primary key, so whatever the interleaving of confirms,
-- retries, sweeps and process deaths, a hold ends as exactly one of "an order" or "void".
-- No foreign key to sales: its check would lock the sale's row, and the sweep must be able to
-- void the holds of a sale whose row is stuck behind a stalled transaction.
CREATE TABLE hold_outcomes (
    reservation_id  text PRIMARY KEY,
    sale_id         bigint NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('order', 'void')),
    decided_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX hold_outcomes_sale_idx ON hold_outcomes (sale_id);

INSERT INTO hold_outcomes (reservation_id, sale_id, outcome, decided_at)
SELECT reservation_id, sale_id, 'order', created_at FROM orders;

-- What each buyer bought in each sale: PostgreSQL's own guard of the per-buyer limit, beside
-- sales_never_oversold, so that a Redis that forgot a buyer's order cannot sell them one more.
-- max_per_buyer is the sale's limit (fixed when the sale is made), copied so that a CHECK can
-- see it.
CREATE TABLE sale_buyers (
    sale_id         bigint NOT NULL REFERENCES sales (id),
    buyer_id        text NOT NULL,
    bought          integer NOT NULL CHECK (bought > 0),
    max_per_buyer   integer NOT NULL,
    PRIMARY KEY (sale_id, buyer_id),
    CONSTRAINT sale_buyers_within_limit CHECK (bought <= max_per_buyer)
);

INSERT INTO sale_buyers (sale_id, buyer_id, bought, max_per_buyer)
SELECT o.sale_id, o.buyer_id, sum(o.qty), greatest(sum(o.qty), max(s.limit_per_buyer))
FROM orders o JOIN sales s ON s.id = o.sale_id
GROUP BY o.sale_id, o.buyer_id;
