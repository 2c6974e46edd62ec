"""Live auctions with anti-sniping: see service.py for the parts; the edge's routes are
gateway/http_auctions.py and the WebSocket `bid` (gateway/commands.py)."""
