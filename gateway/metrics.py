"""Prometheus metrics of the gateway."""

from prometheus_client import Counter, Gauge

CONNECTIONS = Gauge(
    "live_gateway_connections",
    "Open viewer WebSockets in this process",
    multiprocess_mode="livesum",
)
FRAMES_SENT = Counter("live_gateway_frames_sent_total", "Frames written to viewers")
EVENTS_RECEIVED = Counter("live_gateway_events_received_total", "Room events received from Redis")
LOSSY_DROPPED = Counter(
    "live_gateway_lossy_dropped_total",
    "Lossy events left out of a frame by the per-frame cap (counted per group of viewers)",
)
LOSSY_WITHHELD = Counter(
    "live_gateway_lossy_withheld_total",
    "Lossy events left out of the frames of viewers above the high-water mark",
)
DEGRADED_FRAMES = Counter(
    "live_gateway_degraded_frames_total", "Frames sent without lossy events to a slow viewer"
)
SLOW_CONSUMER_CLOSES = Counter(
    "live_gateway_slow_consumer_closes_total", "Viewers closed for not keeping up"
)
GAP_FILLS = Counter("live_gateway_gap_fills_total", "Gaps in a room's events filled from its log")
DIRECT_SENT = Counter(
    "live_gateway_direct_messages_total", "Direct messages (for one user) taken from Redis"
)
