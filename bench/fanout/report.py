"""The report: one row per run, the details of each, and the largest passing room per server with
the ratios of live to its peers."""

from __future__ import annotations

import argparse
import math

from .run import LABELS, P99_GOAL_MS, WARM_UP_S, Result

GOAL_RATIO = {"node": 5.0, "socketio": 20.0}
BANDWIDTH_GOAL_B = 4096  # bytes per viewer per second
BANDWIDTH_RATIO = 8.0  # at least this many times less than Node socket.io


def _fmt(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def report(args: argparse.Namespace, results: dict[str, list[Result]]) -> None:
    head = (
        f"{'server':<16}{'viewers':>8}{'conn':>7}{'events/s':>11}{'frames/s':>10}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'srv CPU':>8}{'gen CPU':>8}{'other':>6}"
        f"{'KiB/conn':>9}{'B/view/s':>9}  p99<250"
    )
    print()
    print(
        f"workload: one room, {args.rate:g} events/s (a pin every {args.pin_every:g} s, "
        f"1/5 stock, rest comments), window {args.duration:g} s after {WARM_UP_S:g} s warm-up; "
        f"server pinned to CPU {','.join(map(str, args.server_cpus)) or 'any'}, "
        f"{args.workers} generator process(es) on CPU {','.join(map(str, args.gen_cpus)) or 'any'}"
    )
    print(
        "CPU in % of one core: srv the server process, gen the load generators and publisher, "
        "other what else ran on the machine (not this bench, Redis or the network's softirq); "
        "lag over every "
        "event of ~"
        f"{args.probes} probe viewers"
    )
    print(head)
    print("-" * len(head))
    for kind, rows in results.items():
        for r in sorted(rows, key=lambda row: row.viewers):
            if r.skipped:
                print(f"{LABELS[kind]:<16}{r.viewers:>8}{'':>7}  skipped (a smaller count failed)")
                continue
            flag = "yes" if r.ok else f"no: {r.why_not()}"
            if r.gen_bound:
                flag += " [generator saturated]"
            print(
                f"{LABELS[kind]:<16}{r.viewers:>8}{r.connected:>7}"
                f"{_fmt(r.per_s(r.events), ',.0f'):>11}{_fmt(r.per_s(r.frames), ',.0f'):>10}"
                f"{_fmt(r.percentile(0.50), '.1f'):>8}{_fmt(r.percentile(0.99), '.1f'):>8}"
                f"{_fmt(r.lag_max, '.0f'):>8}{_fmt(100 * r.server_cpu, '.0f'):>8}"
                f"{_fmt(100 * r.gen_cpu, '.0f'):>8}{_fmt(100 * r.other_cpu, '.0f'):>6}"
                f"{_fmt(r.kib_per_connection, '.1f'):>9}"
                f"{_fmt(r.bytes_per_viewer_s, ',.0f'):>9}  {flag}"
            )
    print()
    for kind, rows in results.items():
        for r in sorted(rows, key=lambda row: row.viewers):
            if r.skipped or r.error:
                continue
            print(
                f"  {LABELS[kind]} {r.viewers}: published {r.published.in_window} events in the "
                f"window ({r.published.in_window / max(r.window_s, 1e-9):.0f}/s, slowest "
                f"{r.published.slowest_ms:.1f} ms), {r.per_s(r.bytes) / 1e6:.1f} MB/s delivered, "
                f"pins {r.pins}/{r.pins_expected} on {r.probes} probes, ramp {r.ramp_s:.1f} s at "
                f"{_fmt(100 * r.ramp_cpu, '.0f')}% server CPU, "
                f"RSS idle {r.rss_idle / 2**20:.0f} MiB / connected "
                f"{r.rss_connected / 2**20:.0f} MiB / loaded {r.rss_load / 2**20:.0f} MiB, "
                f"redis CPU {_fmt(100 * r.redis_cpu, '.0f')}%, "
                f"softirq {_fmt(100 * r.irq_cpu, '.0f')}%"
            )
    proxy_cost(results)
    bandwidth(results)
    best = {kind: _best(rows) for kind, rows in results.items()}
    print()
    print(f"largest room with p99 < {P99_GOAL_MS:.0f} ms, one server process on one core:")
    for kind, rows in results.items():
        passing = best[kind]
        failures = [r.viewers for r in rows if not r.ok and not r.skipped]
        above = (
            f" (fails at {min(f for f in failures if f > passing.viewers)})"
            if passing and any(f > passing.viewers for f in failures)
            else (" (every count tried passed)" if passing else "")
        )
        if passing is None:
            tried = min((r.viewers for r in rows if not r.skipped), default=0)
            print(f"  {LABELS[kind]:<16} none of the counts tried (down to {tried})")
            continue
        per_core = passing.viewers / max(passing.server_cpu, 1e-9)
        print(
            f"  {LABELS[kind]:<16} {passing.viewers:>6} viewers{above}; at that count the server "
            f"used {passing.server_cpu:.0%} of a core ({per_core:,.0f} viewers per CPU-second)"
        )
    ours = best.get("live")
    if ours is not None and {"node", "socketio"} & results.keys():
        every = all(r.ok for r in results["live"] if not r.skipped)
        at_least = ">= " if every else ""
        for peer in ("node", "socketio"):
            theirs = best.get(peer)
            if peer not in results:
                continue
            if theirs is None:
                print(f"  live / {LABELS[peer]}: no passing count for the peer")
                continue
            ratio = ours.viewers / theirs.viewers
            cpu_ratio = (ours.viewers / ours.server_cpu) / (theirs.viewers / theirs.server_cpu)
            goal = GOAL_RATIO[peer]
            print(
                f"  live / {LABELS[peer]}: {at_least}{ratio:.1f}x the viewers per server core "
                f"(goal {goal:g}x: {'met' if ratio >= goal else 'not met'}); "
                f"{cpu_ratio:.1f}x the viewers per CPU-second used"
            )
        ten_k = next((r for r in results["live"] if r.viewers >= 10_000 and r.ok), None)
        print(f"  10k viewers in one room on this machine: {'yes' if ten_k else 'no'}")


def bandwidth(results: dict[str, list[Result]]) -> None:
    """Bytes per viewer per second, count by count, and live's against Node socket.io's."""
    measured = {
        kind: {r.viewers: r for r in rows if r.window_s and r.connected}
        for kind, rows in results.items()
    }
    print()
    print(
        "bandwidth: payload bytes per viewer per second "
        f"(goal: live <= {BANDWIDTH_GOAL_B:,} B/s and {BANDWIDTH_RATIO:g}x less than node):"
    )
    for viewers in sorted({v for rows in measured.values() for v in rows}):
        rows = {
            kind: by_count[viewers] for kind, by_count in measured.items() if viewers in by_count
        }
        line = ", ".join(
            f"{LABELS[kind]} {_fmt(r.bytes_per_viewer_s, ',.0f')}" for kind, r in rows.items()
        )
        ours, node = rows.get("live"), rows.get("node")
        if ours is not None and node is not None and ours.bytes_per_viewer_s > 0:
            if node.ok:
                ratio = node.bytes_per_viewer_s / ours.bytes_per_viewer_s
                met = ratio >= BANDWIDTH_RATIO and ours.bytes_per_viewer_s <= BANDWIDTH_GOAL_B
                line += f"; node / live {ratio:.1f}x (goal {'met' if met else 'not met'})"
            else:  # its bytes are what it managed to send, not what the workload asks
                share = node.per_s(node.events) / node.connected / (node.published.rate or math.nan)
                line += f"; no ratio: node fell behind (delivered {share:.0%} of the events)"
        print(f"  {viewers} viewers: {line}")


def proxy_cost(results: dict[str, list[Result]]) -> None:
    """What HAProxy costs: two nodes behind it against one node direct, count by count."""
    direct = {r.viewers: r for r in results.get("live", []) if r.window_s}
    proxied = {r.viewers: r for r in results.get("live-haproxy", []) if r.window_s}
    if not direct or not proxied:
        return
    print()
    print("what the proxy costs (two live nodes behind HAProxy vs one live node direct):")
    for viewers in sorted(direct.keys() & proxied.keys()):
        one, two = direct[viewers], proxied[viewers]
        frames = two.per_s(two.frames)
        per_frame_us = 1e6 * two.proxy_cpu / frames if frames else math.nan
        print(
            f"  {viewers} viewers: p50 {_fmt(one.percentile(0.5), '.1f')} -> "
            f"{_fmt(two.percentile(0.5), '.1f')} ms, p99 {_fmt(one.percentile(0.99), '.1f')} -> "
            f"{_fmt(two.percentile(0.99), '.1f')} ms "
            f"({_fmt(two.percentile(0.99) - one.percentile(0.99), '+.1f')} ms); "
            f"HAProxy {_fmt(100 * two.proxy_cpu, '.0f')}% of a core "
            f"({_fmt(per_frame_us, '.1f')} µs per frame relayed), live "
            f"{_fmt(100 * one.server_cpu, '.0f')}% of a core on one node -> "
            f"{_fmt(100 * two.server_cpu, '.0f')}% over two; HAProxy / live CPU "
            f"{_fmt(two.proxy_cpu / one.server_cpu, '.2f')}x"
        )


def _best(rows: list[Result]) -> Result | None:
    passing = [r for r in rows if r.ok]
    return max(passing, key=lambda r: r.viewers) if passing else None
