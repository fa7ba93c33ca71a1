"""`segzoo list`: the built-in models as a table (from `segzoo.catalogue`, no TensorFlow)."""

from __future__ import annotations


def rows() -> list[tuple[str, str, str, str]]:
    """(name, task, parameters, description) of every built-in model, sorted by name."""
    from segzoo.catalogue import CATALOGUE

    return [(name, task, f"{parameters:,}", description)
            for name, (task, description, parameters) in sorted(CATALOGUE.items())]


def run(args) -> int:
    table = rows()
    headers = ("name", "task", "parameters", "description")
    widths = [max(len(str(r[i])) for r in [headers, *table]) for i in range(3)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    print(fmt.format(*headers))
    for row in table:
        print(fmt.format(*row))
    return 0
