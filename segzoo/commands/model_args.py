"""`--model-arg NAME=VALUE`: the command line's text -> a constructor keyword argument.

The library (`segzoo.get_model`, `segzoo.training.train`) takes values; the
command line's texts become values here: Python literals when they parse
(`base_filters=16` -> 16, `backbone_weights=None` -> None, `skips=("pool4",)`),
else the text itself (`padding=valid` -> "valid").
"""

from __future__ import annotations

import argparse
import ast


def parse_value(text: str):
    """A Python literal when `text` is one, else `text`."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_model_arg(text: str) -> tuple[str, object]:
    """`NAME=VALUE` -> (name, value); the argparse `type` of `--model-arg`."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(
            f"--model-arg expects NAME=VALUE (e.g. base_filters=16), got {text!r}"
        )
    name, value = text.split("=", 1)
    if not name.isidentifier():
        raise argparse.ArgumentTypeError(f"--model-arg name {name!r} is not a Python identifier")
    return name, parse_value(value)


def parse_model_args(pairs) -> dict:
    """[(name, text), ...] or {name: text} -> kwargs, each text through `parse_value`
    (non-text values are kept)."""
    if isinstance(pairs, dict):
        pairs = pairs.items()
    return {name: parse_value(value) if isinstance(value, str) else value
            for name, value in pairs or ()}
