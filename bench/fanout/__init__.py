"""One room, N viewers: what the gateway delivers, how late, at what CPU and memory, beside
python-socketio (AsyncRedisManager) and Node's socket.io (@socket.io/redis-adapter) serving the
same room workload in the same run.

    .venv/bin/python -m bench.fanout [--viewers 1000,5000,10000] [--duration 10]
                                   [--only live|node|socketio] [--rate 200] [--tick-ms MS]
                                   [--nice -10]   # as root, when other work shares the machine

Each run starts one server process (pinned to CPU 0 unless --no-pin), connects N viewers from
--workers load-generator processes (pinned to the other CPUs; each one asyncio loop with a lean
raw WebSocket client), publishes the room workload for a warm-up and then --duration seconds and
reads what every viewer received:
- live: `python -m live.cli serve` (one worker) on the machine's Redis and PostgreSQL, under a
  unique LIVE_REDIS_PREFIX and LIVE_DATABASE_SCHEMA (both removed afterwards); events go in with
  RoomLog.publish (the Lua XADD + PUBLISH that the HTTP API uses too); one frame per tick.
- socketio: bench/peers/socketio_server.py (AsyncServer + AsyncRedisManager under uvicorn); each
  event is published on the manager's channel as a write-only AsyncRedisManager does.
- node: bench/peers/node_server.js (socket.io + @socket.io/redis-adapter); each event is
  published on the adapter's room channel as @socket.io/redis-emitter does.
Both peers emit each event to the room as one message, which is how those frameworks are used;
they are installed from the registries into --peers-dir (default ~/.cache/live-bench), never into
the repository.

--proxy measures what a load balancer costs instead (no peers): live direct (one node) beside
two live nodes behind HAProxy (deploy/haproxy.cfg, the proxy on the servers' CPU), the same
room and workload at each --viewers count; it prints both rows and the proxy's cost (lag added,
HAProxy's CPU against live's). `--proxy --viewers 2000 --duration 5` takes about a minute.

The workload (--rate events/s): a pin every --pin-every seconds (critical), a stock change every
fifth event (state), comments for the rest (lossy). Every event carries `pt`, its publish time in
ms; a viewer's lag is its receive time minus `pt` (one machine, one clock), sampled on about
--probes viewers spread over the room (every event they receive), while every viewer counts its
frames and events. Server CPU and memory come from /proc; memory per connection is
(RSS at the end of the window - RSS before the first viewer) / N.

Every viewer also counts the payload bytes it receives: the `B/view/s` column and the
`bandwidth:` lines give bytes per viewer per second for each server, and Node socket.io's over
live's where Node kept up with the workload. The peers' messages carry the same fields per event
as live's wire envelope, so the difference is framing, sampling and conflation.

A run passes when every viewer connected and stayed, every probe got every pin of the window,
and p99 < 250 ms. For each server the counts run in ascending order; above a peer's failed count
the rest are skipped (--no-skip runs them; live runs every count), and up to --search extra runs
look for the largest passing count below the first failure. Every loop is bounded in time and
count, and the whole bench stops starting runs after --budget seconds (the default run takes
about 4.5 minutes). The generator costs about as much CPU per frame as the server does: a row
flagged "generator saturated" measured the generator's core, not the server; the "other" column
is CPU taken by work this bench did not start (on a shared machine, --nice -10 keeps it off).

The package, by job: `workload` (what is published), `client` (the load-generator processes and
their raw WebSocket viewers), `storm_client` (the same viewers joining, dropped and resuming all
at once, for bench/storms.py), `procstats` (CPU and memory from /proc, priorities, limits),
`servers` (starting and stopping live and the peers), `peers` (installing the peers), `run` (one
run, and the plan of runs), `report` (the tables), `cli` (the command line).
"""
