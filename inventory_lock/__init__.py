"""inventory_lock package."""
