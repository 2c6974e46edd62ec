"""Prometheus counters of flash sales: what the fault handling did, so an operator sees it."""

from prometheus_client import Counter

POOL_REPAIRS = Counter(
    "live_sales_pool_repairs_total",
    "Pools repaired from PostgreSQL before selling again, by what was found",
    # missing, stale (Redis restarted, restored or failed over), behind, stock (not PostgreSQL's)
    ["reason"],
)
ADOPTED_ORDERS = Counter(
    "live_sales_adopted_orders_total",
    "Orders that Redis had lost or not confirmed, recorded again from PostgreSQL",
)
BUYERS_OVER_LIMIT = Counter(
    "live_sales_buyers_over_limit_total",
    "Buyers a repair found above the per-buyer limit (loaded as they are)",
)
ORDER_MISMATCHES = Counter(
    "live_sales_order_mismatches_total",
    "Confirms refused because the order under their reservation id is not theirs",
)
VOIDED_CONFIRMS = Counter(
    "live_sales_voided_confirms_total",
    "Confirms stuck between Redis and PostgreSQL that the recovery sweep rolled back",
)
