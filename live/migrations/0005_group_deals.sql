-- Group deals (issue 17): a sale of kind 'group' sells its stock only to groups of `group_size`
-- members formed within `window_ms` of the group's start, each member one item at the group
-- price. While a group forms Redis decides every join and leave (flash_sales/group_deals/lua/);
-- each is written here before it is acknowledged, so these rows are what a lost or rolled-back
-- Redis pool is rebuilt from. A group is decided once: 'forming' -> 'formed' (all its orders,
-- in one transaction under the guards of 0001/0002: sales.sold <= stock, sale_buyers' limit,
-- one outcome per hold) or 'failed' (no order).
ALTER TABLE sales ADD COLUMN kind text NOT NULL DEFAULT 'flash'
    CHECK (kind IN ('flash', 'group'));

CREATE TABLE group_deals (
    sale_id            bigint PRIMARY KEY REFERENCES sales (id),
    group_size         integer NOT NULL CHECK (group_size BETWEEN 2 AND 100),
    window_ms          integer NOT NULL CHECK (window_ms BETWEEN 1000 AND 86400000),
    group_price_cents  integer NOT NULL CHECK (group_price_cents >= 0),
    -- The Redis pool these rows take writes from; a rebuild renews it under this row's lock,
    -- so a write of a replaced pool commits before the rebuild reads, or not at all.
    epoch              text
);

CREATE TABLE groups (
    id          bigserial PRIMARY KEY,
    sale_id     bigint NOT NULL REFERENCES group_deals (sale_id),
    size        integer NOT NULL CHECK (size BETWEEN 2 AND 100),
    state       text NOT NULL DEFAULT 'forming' CHECK (state IN ('forming', 'formed', 'failed')),
    starter_id  text NOT NULL,
    closes_at   timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    decided_at  timestamptz,
    CONSTRAINT groups_decided_stamped CHECK ((state = 'forming') = (decided_at IS NULL))
);
CREATE INDEX groups_forming_idx ON groups (sale_id, closes_at) WHERE state = 'forming';

-- A start's idempotency key: the same key of the same buyer names the same group, so a start
-- retried after a lost answer joins the group it started instead of starting another.
CREATE TABLE group_starts (
    sale_id    bigint NOT NULL REFERENCES group_deals (sale_id),
    buyer_id   text NOT NULL,
    start_key  text NOT NULL CHECK (length(start_key) BETWEEN 1 AND 128),
    group_id   bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sale_id, buyer_id, start_key)
);

-- The members of a forming group (a leave deletes the row); of a formed group, those ordered.
CREATE TABLE group_members (
    group_id   bigint NOT NULL REFERENCES groups (id),
    buyer_id   text NOT NULL CHECK (length(buyer_id) BETWEEN 1 AND 200),
    joined_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, buyer_id)
);

-- A group's orders name it; a member's hold is the reservation id 'group-<group>-<buyer>',
-- decided in hold_outcomes like a flash sale's hold (an order, or void when the group failed).
ALTER TABLE orders ADD COLUMN group_id bigint REFERENCES groups (id);
CREATE INDEX orders_group_idx ON orders (group_id) WHERE group_id IS NOT NULL;
