"""segzoo.data."""
