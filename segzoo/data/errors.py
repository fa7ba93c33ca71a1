"""Errors in the user's data found while `tf.data` runs, reported like those found up front.

A dataset reads its files in Python inside `tf.numpy_function`; a `ValueError`
raised there (a mask with a class id outside the classes, an undecodable
image...) reaches the caller wrapped in a `tf.errors.InvalidArgumentError`
whose message also holds the Python traceback. `numpy_element` marks the
message of such errors (`mark`); `user_error_message(error)` finds it again in
whatever TensorFlow or Keras raised, so the CLI prints the same one line
("segzoo train: error: Label file '...' contains class ids [7]; ...") and exits 2.

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import re

_BEGIN, _END = "<<segzoo data error: ", " :segzoo data error>>"
_MARKED = re.compile(re.escape(_BEGIN) + r"(.*?)" + re.escape(_END), re.DOTALL)
USER_ERRORS = (ValueError, FileNotFoundError)


def mark(message: str) -> str:
    """`message` with the markers `user_error_message` looks for."""
    return f"{_BEGIN}{message}{_END}"


def user_error_message(error: BaseException) -> str | None:
    """The one-line message of an error in the user's input, or None for other errors.

    A marked message anywhere in `error`, its `message` or its chained causes
    (TensorFlow's InvalidArgumentError from a dataset, Keras's re-raised
    errors) is returned without the markers; a plain `ValueError` /
    `FileNotFoundError` gives its own message.
    """
    seen, current = set(), error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for text in (str(current), str(getattr(current, "message", ""))):
            found = _MARKED.search(text)
            if found:
                return " ".join(found.group(1).split())
        current = current.__cause__ or current.__context__
    if isinstance(error, USER_ERRORS):
        return str(error)
    return None
