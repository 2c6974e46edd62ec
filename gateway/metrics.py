"""Prometheus metrics of the gateway."""

from prometheus_client import Counter, Gauge, Histogram

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

# Server-side timing (gateway/timing.py), so a load test can tell server time from client time.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
HTTP_DURATION = Histogram(
    "live_http_request_duration_seconds",
    "HTTP requests, from the app's first byte to its last, by route template and method",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
WS_COMMAND_DURATION = Histogram(
    "live_ws_command_duration_seconds",
    "WebSocket commands, from parsed to answered, by command",
    ["command"],
    buckets=LATENCY_BUCKETS,
)
FANOUT_LAG = Histogram(
    "live_gateway_fanout_lag_seconds",
    "From an event's publish time (its `ts`, Redis' clock) to its frame written to a group of "
    "viewers; one observation per frame, for the oldest event in it",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10),
)
