"""The viewers of one load-generator process: its share of the run's viewers (by the process's
locust worker index), opened from the test's start at its share of the viewers' connect rate,
then read by the event loop's callbacks (loadtest/rawfeed.py) until the test stops. One viewer in
`probe_every` (by its index in the whole run) is a probe that decodes every frame; the others
only count theirs. With `comment_every` the viewers comment, each about that often.

Viewers are not locust users: locust spawns users one greenlet each at its own pace, and
fixed-count users are interleaved with the buyers; a process's crowd starts at once and holds
its connect rate itself. It reports through the same locust events as the users."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import gevent
from gevent.pool import Pool

from loadtest import tokens
from loadtest.feed import Fire
from loadtest.params import Params
from loadtest.rawfeed import RawFeed
from loadtest.tally import Tally

CONNECTING_AT_ONCE = 200  # handshakes in flight per process; past it the pace waits
COMMENTS = ("so cute!", "what sizes?", "want!!", "is it waterproof?", "hi from Lyon", "ordered")


def share(total: int, parts: int, index: int) -> tuple[int, int]:
    """(first, count): the slice of `total` items that part `index` of `parts` takes."""
    base, extra = divmod(total, parts)
    return index * base + min(index, extra), base + (1 if index < extra else 0)


class Crowd:
    def __init__(
        self, params: Params, base_url: str, fire: Fire, tally: Tally, process: int
    ) -> None:
        self.params = params
        self.base_url = base_url
        self.fire = fire
        self.tally = tally
        processes = max(params.viewer_processes, 1)
        self.first, self.count = share(params.viewers, processes, process % processes)
        self.rate = params.viewer_rate / processes
        self.secret = tokens.resolve_secret(params.jwt_secret)
        self.feeds: list[RawFeed] = []
        self._greenlets: list[Any] = []

    def start(self) -> None:
        if self.count <= 0:
            return
        self._greenlets.append(gevent.spawn(self._open_all))
        self._greenlets.append(gevent.spawn(self._count_open))
        if self.params.comment_every > 0:
            self._greenlets.append(gevent.spawn(self._chatter))

    def _open_all(self) -> None:
        """Open every viewer of this process at the pace asked, a bounded number at once."""
        pool = Pool(CONNECTING_AT_ONCE)
        began = time.monotonic()
        for offset in range(self.count):
            wait = began + offset / self.rate - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
            index = self.first + offset
            sub = f"viewer-{index}-{uuid.uuid4().hex[:8]}"
            feed = RawFeed(
                self.base_url,
                self.params.room,
                tokens.viewer_token(self.secret, self.params.room, sub),
                self.fire,
                self.tally,
                probe=index % max(self.params.probe_every, 1) == 0,
            )
            self.feeds.append(feed)
            pool.spawn(feed.start)
        pool.join()

    def _count_open(self) -> None:
        """Viewer-seconds (the viewers connected, added every second): the generator's CPU is
        judged per viewer-second."""
        while True:
            gevent.sleep(1.0)
            self.tally.add("viewer_seconds", sum(feed.connected for feed in self.feeds))

    def _chatter(self) -> None:
        """Comments from random connected viewers: each viewer about every `comment_every` s."""
        pause = self.params.comment_every / self.count
        while True:
            gevent.sleep(pause * random.uniform(0.8, 1.2))
            if self.feeds:
                feed = random.choice(self.feeds)
                if feed.send({"type": "comment", "text": random.choice(COMMENTS)}):
                    self.tally.add("comments_sent")

    def stop(self) -> None:
        for greenlet in self._greenlets:
            greenlet.kill(block=True, timeout=1)
        self._greenlets = []
        for feed in self.feeds:
            feed.close()
        self.feeds = []
