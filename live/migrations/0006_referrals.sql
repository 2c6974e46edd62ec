-- Share links (issue 17): a viewer asks for a signed share code of a room; a viewer who opens the
-- room with it is a visit of the sharer's, and their orders in that room carry the sharer as
-- `orders.referrer_id`, filled in the statement that inserts the order (flash_sales/referrals.py).
-- Nothing is paid here: a room's rule only says what the report would pay.

-- Who asked for a share code of a room (the code itself is signed, not stored); anonymous visits
-- are counted here, as they cannot be attributed to anyone.
CREATE TABLE referral_codes (
    room_id           text NOT NULL REFERENCES rooms (id),
    sharer_id         text NOT NULL CHECK (length(sharer_id) BETWEEN 1 AND 200),
    anonymous_visits  bigint NOT NULL DEFAULT 0 CHECK (anonymous_visits >= 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, sharer_id)
);

-- A signed-in viewer's visit, once per room: the first sharer whose link they opened wins, and
-- never the viewer themself (the sharer's own visits are not recorded).
CREATE TABLE referral_visits (
    room_id     text NOT NULL,
    viewer_id   text NOT NULL CHECK (length(viewer_id) BETWEEN 1 AND 200),
    sharer_id   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, viewer_id),
    FOREIGN KEY (room_id, sharer_id) REFERENCES referral_codes (room_id, sharer_id),
    CONSTRAINT referral_visits_not_self CHECK (viewer_id <> sharer_id)
);
CREATE INDEX referral_visits_sharer_idx ON referral_visits (room_id, sharer_id);

-- A room's reward rule: this percent of the revenue attributed to a sharer (reported, not paid).
CREATE TABLE referral_rules (
    room_id     text PRIMARY KEY REFERENCES rooms (id),
    percent     integer NOT NULL CHECK (percent BETWEEN 0 AND 100),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE orders ADD COLUMN referrer_id text;
CREATE INDEX orders_referrer_idx ON orders (referrer_id) WHERE referrer_id IS NOT NULL;
