"""The gate a comment passes before it is published: mute, slow mode and the rate limit, shared
by every process through Redis (lua/comment_gate.lua)."""

from __future__ import annotations

from rooms import scripts
from rooms.errors import Forbidden, Throttled
from rooms.log import RoomLog
from rooms.rules import CommentPolicy

_DETAILS = {
    "muted": "you are muted in this room",
    "slow_mode": "slow mode is on: wait before commenting again",
    "rate_limited": "too many comments: wait a moment",
}


class CommentGate:
    def __init__(self, client: scripts.Client, log: RoomLog, policy: CommentPolicy) -> None:
        self.log = log
        self.policy = policy
        self._gate = scripts.load(client, "comment_gate")

    async def admit(self, room: str, user: str, comment_id: str) -> None:
        """Let the user's comment through, or refuse it (Forbidden when muted, else Throttled).
        Counts the attempt once per comment id, so a retried call is not counted twice."""
        keys = self.log.keys(room)
        reason, retry_ms = await self._gate(
            keys=[keys.muted, keys.state, keys.user("rate", user), keys.user("slow", user)],
            args=[user, self.policy.per_window, self.policy.window_ms, comment_id],
        )
        reason = reason.decode() if isinstance(reason, bytes) else reason
        if reason == "ok":
            return
        refusal = Forbidden if reason == "muted" else Throttled
        raise refusal(reason, _DETAILS[reason], retry_after_s=int(retry_ms) / 1000)
