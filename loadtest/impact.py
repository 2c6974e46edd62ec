"""What each injected fault did to the buyers, from their recorded calls (calls.json): the 503s
it caused, other 5xx, calls left without an answer, and how long until the sale sold again.

- A fault's window runs from its start to the next fault's (the last one's to the end of the
  run): its 503s, other 5xx and unanswered calls are the answers that came in it.
- "Sold again": the first order (a confirm answered 201) among the calls started once the fault
  was in place (a stall: once the row was locked), timed at its answer from the fault's start;
  when no buyer tried to confirm after the fault, the first hold (a reservation answered 201).
- A fault's row fails when it could not be injected, or when buyers kept trying after it and the
  sale never sold again. It passes without a recovery time when no buyer tried after it, or when
  every answer after it said there was nothing left to buy (sold_out, limit).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from loadtest.verdict import Row

NOTHING_LEFT = frozenset({"sold_out", "limit"})


@dataclass(frozen=True)
class Call:
    started: float  # epoch seconds
    answered: float
    kind: str  # reserve | confirm
    status: int  # 0: no answer
    code: str  # the API's error code, or http_<status>


def calls_from(raw: list[list[Any]]) -> list[Call]:
    return [Call(float(a), float(b), str(k), int(s), str(c)) for a, b, k, s, c in raw]


@dataclass(frozen=True)
class Impact:
    name: str
    at_s: float  # after the run started
    into_sale_s: float | None  # after the sale opened
    took_s: float
    unavailable: int  # 503 answers in its window
    server_errors: int  # other 5xx in its window
    no_answer: int  # calls without an answer in its window
    first_hold_s: float | None  # after the fault began
    first_order_s: float | None
    recovered_s: float | None  # until the sale sold again
    ok: bool
    detail: str

    def view(self) -> dict[str, Any]:
        return asdict(self)

    def row(self, index: int) -> Row:
        return Row(f"fault {index}: {self.name}", self.ok, self.detail)


def _first(calls: list[Call], kind: str, since: float) -> float | None:
    times = [c.answered - since for c in calls if c.kind == kind and c.status == 201]
    return round(min(times), 2) if times else None


def _verdict(
    after: list[Call], hold: float | None, order: float | None
) -> tuple[float | None, bool, str]:
    """(recovered_s, ok, what happened) from the calls started after the fault."""
    confirms = [c for c in after if c.kind == "confirm"]
    recovered = order if confirms else hold
    if recovered is not None:
        firsts = f"first hold {_s(hold)}, first order {_s(order)}"
        return recovered, True, f"sold again after {recovered:.1f} s ({firsts})"
    if not after:
        return None, True, "no buyer tried after it (nothing to judge)"
    if all(c.kind == "reserve" and c.code in NOTHING_LEFT for c in after):
        return None, True, f"nothing left to buy after it ({len(after)} calls: sold_out, limit)"
    answers: dict[str, int] = {}
    for call in after:
        label = "201" if call.status == 201 else call.code
        answers[f"{call.kind} {label}"] = answers.get(f"{call.kind} {label}", 0) + 1
    seen = ", ".join(f"{k} x{v}" for k, v in sorted(answers.items(), key=lambda kv: -kv[1])[:4])
    return None, False, f"never sold again: {len(after)} calls after it ({seen})"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def impacts(
    injected: list[dict[str, Any]],
    calls: list[Call],
    run_start: float,
    run_end: float,
    sale_opened: float | None,
) -> list[Impact]:
    """One Impact per injected fault (as Injected.view() gives them), in the order they began."""
    ordered = sorted(injected, key=lambda fault: float(fault["at"]))
    found: list[Impact] = []
    for index, fault in enumerate(ordered):
        at = float(fault["at"])
        until = float(ordered[index + 1]["at"]) if index + 1 < len(ordered) else run_end
        window = [c for c in calls if at <= c.answered < until]
        after = [c for c in calls if c.started >= float(fault.get("effective") or at)]
        hold, order = _first(after, "reserve", at), _first(after, "confirm", at)
        unavailable = sum(1 for c in window if c.status == 503)
        errors = sum(1 for c in window if c.status >= 500 and c.status != 503)
        unanswered = sum(1 for c in window if c.status == 0)
        into = None if sale_opened is None else round(at - sale_opened, 2)
        head = f"at {at - run_start:.1f} s" + (
            "" if into is None else f" ({into:.1f} s into the sale)"
        )
        if fault.get("error"):
            recovered, ok, what = None, False, f"not injected: {fault['error']}"
        else:
            recovered, ok, what = _verdict(after, hold, order)
        detail = (
            f"{head}, lasted {float(fault.get('took_s', 0)):.1f} s: {unavailable} x 503,"
            f" {errors} other 5xx, {unanswered} unanswered; {what}"
        )
        found.append(
            Impact(
                name=str(fault["name"]),
                at_s=round(at - run_start, 2),
                into_sale_s=into,
                took_s=float(fault.get("took_s", 0)),
                unavailable=unavailable,
                server_errors=errors,
                no_answer=unanswered,
                first_hold_s=hold,
                first_order_s=order,
                recovered_s=recovered,
                ok=ok,
                detail=detail,
            )
        )
    return found
