"""Prometheus metrics of webhook delivery (multiprocess-safe, see gateway/prometheus.py)."""

from prometheus_client import Counter, Gauge

DELIVERED = Counter("live_webhook_deliveries_total", "Events delivered to an endpoint (a 2xx)")
FAILED = Counter(
    "live_webhook_failures_total", "Delivery attempts that failed (a status, a timeout, no answer)"
)
DEAD_LETTERS = Counter(
    "live_webhook_dead_letters_total", "Deliveries given up past the retry window (replayable)"
)
OLDEST_UNDELIVERED = Gauge(
    "live_webhook_oldest_undelivered_seconds",
    "Age of the oldest event not delivered to every endpoint yet (0: none)",
    multiprocess_mode="livemax",
)
