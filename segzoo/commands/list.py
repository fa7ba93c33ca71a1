"""`segzoo list`: the registered models as a table."""

from __future__ import annotations


def run(args) -> int:
    from segzoo.registry import get_model_spec, list_models

    rows = []
    for name in list_models():
        spec = get_model_spec(name)
        model = spec.builder(**spec.default_kwargs)
        rows.append((name, spec.task, f"{model.count_params():,}", spec.description))
    headers = ("name", "task", "parameters", "description")
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(3)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    print(fmt.format(*headers))
    for row in rows:
        print(fmt.format(*row))
    return 0
