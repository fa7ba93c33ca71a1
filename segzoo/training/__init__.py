"""segzoo.training."""
