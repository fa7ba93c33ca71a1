"""`segzoo train MODEL ...`: the common fit loop (`segzoo.training.fit.train`)."""

from __future__ import annotations


def run(args) -> int:
    from segzoo.training.fit import train

    train(args)
    return 0
