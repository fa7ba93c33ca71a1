"""segzoo.evaluation."""
