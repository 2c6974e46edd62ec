"""Locust users for a live-shopping flash sale: Buyer and Host over the real protocols, and in
every process that runs users its share of --live-viewers viewers (loadtest/viewers.py: raw
sockets, many per process, reporting through the same locust events).

Run it through `live loadtest flash-sale` (which also starts the service, checks the business
invariants and draws the report), or with plain locust against a running service:

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --headless -u 51 -r 50 \\
        -t 60s --live-buyers 50 --live-viewers 250 --live-viewer-rate 100 --live-stock 100 \\
        --live-max-p99-ms 500

Every `--live-*` option may instead be set as `LIVE_LOADTEST_*` (see loadtest/params.py). The
JWT secret defaults to LIVE_JWT_SECRET, else the development secret in LIVE_DATA_DIR. Without
--live-room/--live-sale the master creates a room, a product and a sale at test start. The
master hands all options (the secret, the sale and the moment the host starts it) to its workers
with each spawn message, so workers on other machines need only:

    locust -f loadtest/locustfile.py --worker --master-host MASTER_ADDRESS

Request types in locust's stats: `WS connect` (connect, resume: the handshake up to the welcome
frame), `WS drop` (a connection lost or closed by the server; a failure), `WS event` named by
the type of a frame's oldest event (response time = its publish-to-receive lag from the event's
`ts`; probe viewers only), `WS replay` (frames caught up on a resume), `reserve`, `confirm` and
`host` (pin, message, start sale, figures).

With thresholds set (--live-max-p99-ms, --live-max-error-rate) or --live-chaos the exit code
is 1 when a threshold is broken and 0 otherwise; with --live-out DIR the master writes
DIR/timeline.jsonl (one row a second) and DIR/summary.json (and DIR/calls.json with chaos).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # loaded by path, as locust does: make `loadtest` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import locust.runners
from locust import events as locust_events
from locust.runners import WorkerRunner

from loadtest import scenario, tokens
from loadtest.api import Api
from loadtest.buyer import Buyer
from loadtest.monitor import Monitor
from loadtest.params import Params, add_arguments, buy_margin_s
from loadtest.users import Host, pending
from loadtest.viewers import Crowd

__all__ = ["Buyer", "Host"]

log = logging.getLogger("loadtest")

# Workers report to the master every second (locust's default is 3 s): the timeline and the
# progress display follow the run more closely.
locust.runners.WORKER_REPORT_INTERVAL = 1.0
# A worker opening thousands of sockets on a busy machine can miss heartbeats for a few seconds;
# with locust's default (3 missed) the master then stops the whole test.
locust.runners.HEARTBEAT_LIVENESS = 10

_monitor: Monitor | None = None
_crowd: Crowd | None = None
events: Any = locust_events  # untyped event hooks


def _arguments(parser: Any, **_: Any) -> None:
    add_arguments(parser)


def _init(environment: Any, **_: Any) -> None:
    global _monitor
    params = Params.from_options(environment.parsed_options)
    if params.buyers > 0:
        Buyer.fixed_count = params.buyers
    if isinstance(environment.runner, WorkerRunner):
        environment.events.report_to_master.add_listener(_report)
        return
    local = pending if environment.runner is not None and not _is_master(environment) else None
    _monitor = Monitor(environment, local)
    environment.events.worker_report.add_listener(_monitor.on_worker_report)


def _is_master(environment: Any) -> bool:
    return isinstance(environment.runner, locust.runners.MasterRunner)


def _report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    data["live"] = pending.drain()


def _test_start(environment: Any, **_: Any) -> None:
    pending.measuring = True
    if isinstance(environment.runner, WorkerRunner):
        _start_crowd(environment)
        return
    if _monitor is None:
        return
    if _monitor.starts:  # locust restarted the test (a worker went missing): keep the plan
        _monitor.starts += 1
        log.warning("the test was restarted by locust: this run is not a valid measurement")
        return
    options = environment.parsed_options
    params = Params.from_options(options)
    secret = tokens.resolve_secret(params.jwt_secret)
    options.live_jwt_secret = secret
    if not params.room or not params.sale:
        room = params.room or scenario.new_room_id()
        api = Api(environment.host or "", tokens.host_token(secret, room))
        made = scenario.create(
            api,
            room,
            stock=params.stock,
            limit=params.limit,
            hold_seconds=params.hold_seconds,
            price_cents=params.price_cents,
        )
        api.close()
        options.live_room, options.live_sale, options.live_product = (
            made.room,
            made.sale,
            made.product,
        )
        log.info("created room %s, product %s, sale %s", made.room, made.product, made.sale)
    elif not params.product:
        api = Api(environment.host or "", tokens.host_token(secret, params.room))
        options.live_product = int(scenario.figures(api, params.sale)["product_id"])
        api.close()
    now = time.time()
    options.live_sale_epoch_ms = int((now + params.sale_at) * 1000)
    run_time = getattr(options, "run_time", None)
    if run_time:  # stop buying a little before the end, so that no confirm is cut off mid-way
        options.live_buy_until_epoch_ms = int((now + run_time - buy_margin_s(run_time)) * 1000)
    _monitor.start()
    if not _is_master(environment):
        _start_crowd(environment)


def _start_crowd(environment: Any) -> None:
    """This process's viewers, from now on (a worker's share by its index)."""
    global _crowd
    if _crowd is not None:  # locust restarted the test: the viewers stay connected
        return
    params = Params.from_options(environment.parsed_options)
    index = getattr(environment.runner, "worker_index", 0)
    _crowd = Crowd(params, environment.host or "", environment.events.request.fire, pending, index)
    _crowd.start()


def _stopping(environment: Any, **_: Any) -> None:
    global _crowd
    pending.measuring = False
    if _crowd is not None:
        _crowd.stop()
        _crowd = None


def _quitting(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or _monitor is None:
        return
    result = _monitor.finish()
    # A chaos run expects failed calls (requests cut off by a fault): the thresholds decide,
    # not locust's exit-on-any-error.
    if result["thresholds_set"] or Params.from_options(environment.parsed_options).chaos:
        environment.process_exit_code = 0 if result["thresholds_ok"] else 1


events.init_command_line_parser.add_listener(_arguments)
events.init.add_listener(_init)
events.test_start.add_listener(_test_start)
events.test_stopping.add_listener(_stopping)
events.quitting.add_listener(_quitting)
