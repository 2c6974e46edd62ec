"""flash_sales package."""
