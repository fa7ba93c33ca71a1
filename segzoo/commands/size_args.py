"""`--image-size` and `--scale-jitter` text -> values (the command line's parsing).

Import-light: argparse calls these while parsing, before TensorFlow starts
(`segzoo.commands.quiet`), so this module imports nothing of segzoo's.
"""

from __future__ import annotations


def parse_image_size(text):
    """`--image-size` text or value -> int, or a tuple of ints for "96,112,128".

    Raises:
        ValueError: not positive integers.
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        values = [text]
    elif isinstance(text, list | tuple):
        values = list(text)
    else:
        values = [v for v in str(text).replace(" ", "").split(",") if v]
    try:
        sizes = [int(v) for v in values if float(v) == int(float(v))]
    except (TypeError, ValueError):
        sizes = []
    if not sizes or len(sizes) != len(values) or min(sizes) < 1:
        raise ValueError(
            f"--image-size expects a positive integer or comma-separated integers "
            f"(e.g. 128 or 96,112,128), got {text!r}"
        )
    return sizes[0] if len(sizes) == 1 else tuple(sizes)


def parse_scale_jitter(text):
    """`--scale-jitter LOW,HIGH` -> (low, high) floats (e.g. "0.1,2.0").

    Raises:
        ValueError: not two numbers with 0 < low <= high.
    """
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != 2 or not 0 < values[0] <= values[1]:
        raise ValueError(f"--scale-jitter expects LOW,HIGH with 0 < LOW <= HIGH (e.g. 0.1,2.0), "
                         f"got {text!r}")
    return values
