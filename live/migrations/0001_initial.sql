-- Rooms, their products, flash sales and the orders they produce: the system of record.
CREATE TABLE rooms (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    title       text NOT NULL CHECK (length(title) <= 200),
    host_id     text NOT NULL,
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz
);

CREATE TABLE products (
    id          bigserial PRIMARY KEY,
    room_id     text NOT NULL REFERENCES rooms (id),
    sku         text NOT NULL CHECK (length(sku) BETWEEN 1 AND 64),
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    price_cents integer NOT NULL CHECK (price_cents >= 0),
    image_url   text NOT NULL DEFAULT '' CHECK (length(image_url) <= 2000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (room_id, sku)
);

CREATE TABLE sales (
    id              bigserial PRIMARY KEY,
    room_id         text NOT NULL REFERENCES rooms (id),
    product_id      bigint NOT NULL REFERENCES products (id),
    price_cents     integer NOT NULL CHECK (price_cents >= 0),
    stock           integer NOT NULL CHECK (stock > 0),
    sold            integer NOT NULL DEFAULT 0 CHECK (sold >= 0),
    limit_per_buyer integer NOT NULL CHECK (limit_per_buyer > 0),
    hold_seconds    integer NOT NULL CHECK (hold_seconds > 0),
    state           text NOT NULL DEFAULT 'scheduled'
                    CHECK (state IN ('scheduled', 'open', 'sold_out', 'ended')),
    starts_at       timestamptz,
    ends_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    ended_at        timestamptz,
    CONSTRAINT sales_never_oversold CHECK (sold <= stock)
);
CREATE INDEX sales_room_idx ON sales (room_id);
CREATE INDEX sales_pending_idx ON sales (state) WHERE state <> 'ended';

CREATE TABLE orders (
    id              bigserial PRIMARY KEY,
    reservation_id  text NOT NULL UNIQUE,
    sale_id         bigint NOT NULL REFERENCES sales (id),
    buyer_id        text NOT NULL,
    qty             integer NOT NULL CHECK (qty > 0),
    price_cents     integer NOT NULL CHECK (price_cents >= 0),
    total_cents     bigint NOT NULL CHECK (total_cents >= 0),
    payment_ref     text NOT NULL CHECK (length(payment_ref) BETWEEN 1 AND 200),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_sale_buyer_idx ON orders (sale_id, buyer_id);
