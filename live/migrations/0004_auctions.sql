-- Auctions: the auction and its settings, every accepted bid in the order the server accepted
-- it, and the settlement (the winner's offer, the runner-up's second chance, the order).
-- While an auction is open Redis decides every bid (flash_sales/auctions/lua/bid.lua); each
-- accepted bid is written here before it is acknowledged (flash_sales/auctions/recorder.py), so
-- these rows are the record a lost or rolled-back Redis book is rebuilt from (rebuild.py).
CREATE TABLE auctions (
    id               bigserial PRIMARY KEY,
    room_id          text NOT NULL REFERENCES rooms (id),
    product_id       bigint NOT NULL REFERENCES products (id),
    start_cents      integer NOT NULL CHECK (start_cents > 0),
    increments       jsonb NOT NULL,  -- [[from_cents, step_cents], ...], the first from 0
    duration_ms      integer NOT NULL CHECK (duration_ms > 0),
    snipe_window_ms  integer NOT NULL CHECK (snipe_window_ms >= 0),
    max_extensions   integer NOT NULL CHECK (max_extensions >= 0),
    reserve_cents    integer CHECK (reserve_cents > 0),  -- hidden from everyone but the host
    state            text NOT NULL DEFAULT 'scheduled'
                     CHECK (state IN ('scheduled', 'open', 'ended')),
    price_cents      integer CHECK (price_cents > 0),
    leader_id        text,
    leader_name      text,
    bid_count        integer NOT NULL DEFAULT 0 CHECK (bid_count >= 0),
    extensions       integer NOT NULL DEFAULT 0,
    leader_max_cents integer,  -- the leader's hidden maximum (for a rebuild), never shown
    live_rev         integer NOT NULL DEFAULT 0,  -- accepted bid calls the figures include
    book_epoch       text,  -- the Redis book these rows take bids from; a rebuild renews it
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    ends_at          timestamptz,
    ended_at         timestamptz,
    pool_dropped_at  timestamptz,  -- its settlement pool left Redis (settled)
    announced_at     timestamptz,  -- auction_ended told the room (swept until it is)
    CONSTRAINT auctions_extensions_capped CHECK (extensions BETWEEN 0 AND max_extensions)
);
CREATE INDEX auctions_room_idx ON auctions (room_id);
CREATE INDEX auctions_open_idx ON auctions (ends_at) WHERE state = 'open';
CREATE INDEX auctions_settling_idx ON auctions (id)
    WHERE state = 'ended' AND pool_dropped_at IS NULL;
CREATE INDEX auctions_unannounced_idx ON auctions (ended_at)
    WHERE state = 'ended' AND announced_at IS NULL;

-- Every accepted bid, the proxy bids the server made for a hidden maximum among them.
CREATE TABLE auction_bids (
    auction_id    bigint NOT NULL REFERENCES auctions (id),
    seq           integer NOT NULL CHECK (seq > 0),
    bidder_id     text NOT NULL,
    amount_cents  integer NOT NULL CHECK (amount_cents > 0),
    proxy         boolean NOT NULL,
    accepted_at   timestamptz NOT NULL,  -- the Redis server's clock when it was accepted
    PRIMARY KEY (auction_id, seq)
);

-- The answer of every accepted bid call, by (auction, the book's idempotency field): a rebuilt
-- book answers a retried bid as it was first answered, never as a new bid.
CREATE TABLE auction_calls (
    auction_id  bigint NOT NULL REFERENCES auctions (id),
    field       text NOT NULL,  -- "<bidder length>:<bidder><idempotency key>"
    rev         integer NOT NULL CHECK (rev > 0),
    answer      text NOT NULL,  -- the script's JSON answer
    PRIMARY KEY (auction_id, field)
);

-- Auction orders go into the orders of flash sales: each order is of a sale or of an auction,
-- and an auction has one order at most.
ALTER TABLE orders ALTER COLUMN sale_id DROP NOT NULL;
ALTER TABLE orders ADD COLUMN auction_id bigint REFERENCES auctions (id);
ALTER TABLE orders ADD CONSTRAINT orders_of_sale_or_auction
    CHECK ((sale_id IS NULL) <> (auction_id IS NULL));
CREATE UNIQUE INDEX orders_one_per_auction ON orders (auction_id) WHERE auction_id IS NOT NULL;

-- The settlement: rank 1 is the winner's offer, rank 2 the runner-up's second chance once the
-- winner let their hold run out. An offer is a hold (reservation_id, in the auction's
-- inventory_lock pool) and ends as exactly one of an order or void, decided here by a guarded
-- UPDATE from 'offered'; at most one offer of an auction is open, and at most one an order.
CREATE TABLE auction_offers (
    auction_id      bigint NOT NULL REFERENCES auctions (id),
    rank            smallint NOT NULL CHECK (rank IN (1, 2)),
    bidder_id       text NOT NULL,
    price_cents     integer NOT NULL CHECK (price_cents > 0),
    reservation_id  text UNIQUE,  -- null until the hold is made
    expires_at      timestamptz,
    state           text NOT NULL DEFAULT 'offered' CHECK (state IN ('offered', 'order', 'void')),
    order_id        bigint REFERENCES orders (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    decided_at      timestamptz,
    PRIMARY KEY (auction_id, rank),
    UNIQUE (auction_id, bidder_id),
    CONSTRAINT auction_offers_order_linked CHECK ((state = 'order') = (order_id IS NOT NULL))
);
CREATE UNIQUE INDEX auction_offers_one_open ON auction_offers (auction_id)
    WHERE state = 'offered';
CREATE UNIQUE INDEX auction_offers_one_order ON auction_offers (auction_id)
    WHERE state = 'order';

-- An auction's events to the merchant (`auction.won`) go into the outbox as a stream of their
-- own: numbered by the auction's row as a sale's are by the sale's (0003), and delivered in
-- order per auction and endpoint. `stream` names the entry's delivery queues: the sale's id,
-- or minus the auction's (ids are positive), which is what deliveries.sale_id and
-- delivery_queues.sale_id hold for an auction's events.
ALTER TABLE auctions ADD COLUMN event_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE outbox ALTER COLUMN sale_id DROP NOT NULL;
ALTER TABLE outbox ADD COLUMN auction_id bigint REFERENCES auctions (id);
ALTER TABLE outbox ADD CONSTRAINT outbox_of_sale_or_auction
    CHECK ((sale_id IS NULL) <> (auction_id IS NULL));
ALTER TABLE outbox ADD COLUMN stream bigint GENERATED ALWAYS AS (coalesce(sale_id, -auction_id)) STORED;
CREATE INDEX outbox_unfanned_stream_idx ON outbox (stream, seq) WHERE fanned_at IS NULL;
