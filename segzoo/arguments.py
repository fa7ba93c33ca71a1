"""Checks of the plain arguments that several layers of segzoo take (one definition each)."""

from __future__ import annotations


def size_pair(value, name: str) -> tuple[int, int]:
    """`(height, width)` ints from an int or a pair of integral numbers, both >= 1.

    Raises:
        ValueError: naming the argument `name` and the value received.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    try:
        height, width = (int(v) for v in value)
        ok = all(float(v) == int(v) for v in value)
    except (TypeError, ValueError):
        ok = False
    if not ok or height < 1 or width < 1:
        raise ValueError(
            f"{name} must be a positive int or a pair (height, width) of positive ints; "
            f"received {value!r}."
        )
    return height, width
