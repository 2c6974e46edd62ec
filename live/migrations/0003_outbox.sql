-- The outbox to the merchant's systems: every event is written in the same transaction as what
-- it announces (an order, a sale's move, a stock change), then delivered by a dispatcher in every
-- process, at least once, in order per sale and endpoint (flash_sales/webhooks/).

-- Each sale numbers its events: the counter sits on the sale's row, which every event's
-- transaction updates anyway, so an event's number is taken under the row's lock and a sale's
-- events are numbered gaplessly in the order their transactions commit.
ALTER TABLE sales ADD COLUMN event_seq bigint NOT NULL DEFAULT 0;
-- Stock can now be taken out of a running sale, down to what is sold (and held, in Redis).
ALTER TABLE sales DROP CONSTRAINT sales_stock_check;
ALTER TABLE sales ADD CONSTRAINT sales_stock_check CHECK (stock >= 0);

-- An entry is one event, or the `order.created` events of one group-commit batch (one row per
-- batch, not per order: what a confirm pays for the outbox stays small, see bench/confirm.py).
CREATE TABLE outbox (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),  -- a single event's id: evt_<hex>
    sale_id     bigint NOT NULL,
    seq         bigint NOT NULL,  -- the sale's number of the (first) event (sales.event_seq)
    type        text NOT NULL,
    order_ids   bigint[],  -- order.created: the batch's orders, events seq, seq + 1, ... in turn
    data        jsonb,  -- every other event: its data
    created_at  timestamptz NOT NULL DEFAULT now(),
    fanned_at   timestamptz  -- when its deliveries were made, one per event and endpoint
);
-- Entries still to fan out; also what keeps a sale's later events from being sent before them.
CREATE INDEX outbox_unfanned_idx ON outbox (sale_id, seq) WHERE fanned_at IS NULL;
CREATE INDEX outbox_created_idx ON outbox (created_at);

-- The global endpoints (LIVE_WEBHOOK_URL), registered by each process configured with them (at
-- its start and every minute). Every process fans events out to every endpoint registered here,
-- whatever its own settings say, so that a process started without the setting (a rolling
-- deploy, a mistake) loses nothing: its deliveries wait for a process that has the secrets to
-- send them. An endpoint that no process has registered for the retry window (the webhook max
-- age) gets no more events.
CREATE TABLE webhook_globals (
    url      text PRIMARY KEY,
    seen_at  timestamptz NOT NULL DEFAULT now()
);

-- Endpoints of a room (the global ones come from LIVE_WEBHOOK_URL). `secrets`: one, or two
-- while the merchant rotates; a removed endpoint is kept for the deliveries that name it.
CREATE TABLE webhooks (
    id          bigserial PRIMARY KEY,
    room_id     text NOT NULL REFERENCES rooms (id),
    url         text NOT NULL CHECK (length(url) <= 2000),
    secrets     text[] NOT NULL CHECK (cardinality(secrets) BETWEEN 1 AND 2),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    removed_at  timestamptz
);
CREATE UNIQUE INDEX webhooks_room_url_idx ON webhooks (room_id, url) WHERE removed_at IS NULL;

-- One event to one endpoint: webhook_id 0 for a global endpoint (named by its url).
CREATE TABLE deliveries (
    id            bigserial PRIMARY KEY,
    entry_id      uuid NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    event_id      uuid NOT NULL,  -- the event's own id, the same on every attempt
    type          text NOT NULL,
    body          text NOT NULL,  -- the event as every attempt sends (and signs) it
    sale_id       bigint NOT NULL,
    seq           bigint NOT NULL,
    webhook_id    bigint NOT NULL,
    url           text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),  -- retries stop max age after this
    event_at      timestamptz NOT NULL,  -- the event's created_at
    attempts      integer NOT NULL DEFAULT 0,
    next_at       timestamptz NOT NULL DEFAULT now(),
    last_status   integer,
    last_error    text,
    delivered_at  timestamptz,
    dead          boolean NOT NULL DEFAULT false,
    -- sent again on the operator's demand (live webhooks replay) after it was delivered or
    -- dead-lettered: outside the queue's order, so that it holds back no later event
    replay        boolean NOT NULL DEFAULT false,
    UNIQUE (event_id, webhook_id, url)
);
-- A queue is a sale's events to one endpoint; its head is its undelivered event of lowest seq.
CREATE INDEX deliveries_pending_idx ON deliveries (sale_id, webhook_id, url, seq)
    WHERE delivered_at IS NULL AND NOT dead;
CREATE INDEX deliveries_pending_age_idx ON deliveries (event_at)
    WHERE delivered_at IS NULL AND NOT dead;
CREATE INDEX deliveries_entry_idx ON deliveries (entry_id);

-- When each queue is to be looked at next, and who works on it: a dispatcher claims a queue
-- (claim, next_at pushed out by a lease), sends its events one by one in seq order, and gives it
-- back with next_at set to its head's. A fan-out that adds to a queue bumps `version`, so that a
-- dispatcher giving it back looks again soon instead of missing the new events.
CREATE TABLE delivery_queues (
    sale_id     bigint NOT NULL,
    webhook_id  bigint NOT NULL,
    url         text NOT NULL,
    next_at     timestamptz NOT NULL DEFAULT now(),
    claim       uuid,
    version     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (sale_id, webhook_id, url)
);
CREATE INDEX delivery_queues_next_idx ON delivery_queues (next_at);

-- Stock changed from outside, one row per request id: PostgreSQL decides whether a change
-- applied (with its stock UPDATE) or was voided (its caller gave up between Redis and here and
-- the recovery sweep claimed it), as hold_outcomes does for holds.
CREATE TABLE stock_changes (
    sale_id      bigint NOT NULL,
    request_id   text NOT NULL,
    delta        integer NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('applied', 'void')),
    stock_after  integer,
    decided_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sale_id, request_id)
);
