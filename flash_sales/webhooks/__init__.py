"""Webhooks: the outbox's events (flash_sales/outbox.py) delivered to the merchant's endpoints,
signed, at least once, in order per sale and endpoint, with retries and dead letters.

- `endpoints`: what an endpoint is (a global one from the settings, or a room's), URL and secret
  rules, the retry schedule;
- `signature`: the `Live-Signature` header, and how a receiver verifies it;
- `deliveries`: the deliveries in PostgreSQL (one per event and endpoint) and their queues;
- `dispatcher`: the loop in every process that fans events out and sends them;
- `rooms`: a room's endpoints, managed by its hosts.
"""
