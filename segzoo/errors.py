"""Argument errors worded for whoever made the call: Python keywords or the CLI's flags.

A library user calling `segzoo.export.export_checkpoint(..., quantize="int8")`
never typed `--quantize`; a command-line user never wrote `quantize=`. So a
library message marks each argument it names with `arg(name[, value])`, and
`ArgumentError` renders the marks:

    raise ArgumentError(f"{arg('quantize', 'int8')} needs {arg('calibration_data', 'NAME[:split]')}")

    str(error)              # "quantize='int8' needs calibration_data='NAME[:split]'"
    error.arguments         # ("quantize", "calibration_data")
    error.render({"quantize": "--quantize", "calibration_data": "--calibration-data"})
                            # "--quantize int8 needs --calibration-data NAME[:split]"

`str(error)` (what Python code, tracebacks and `pytest.raises(match=...)` see)
is always the Python wording: `name`, or `name=repr(value)`. The CLI
(`segzoo.cli.main`) renders the same message with the flags of the command
being run, read from its argparse parser (`dest` -> option string; a Python
keyword is the `dest` of its flag): `--flag`, `--flag VALUE` (a list as
`A,B`; `True` as the bare switch). An argument the command has no flag for
keeps its Python wording.

`ArgumentError` is a `ValueError` and `MissingFileError` a
`FileNotFoundError`, so `except ValueError` and the CLI's one-line report
(exit 2) treat them as before. Library modules (everything outside
`segzoo/cli.py` and `segzoo/commands/`) never spell a flag in an error
message; tests/test_structure.py checks it.

Importing this module imports nothing else of segzoo (nor TensorFlow).
"""

from __future__ import annotations

import re
import shlex

# ASCII record / unit / group separators: never in a message's own text.
_OPEN, _SEP, _CLOSE = "\x1e", "\x1f", "\x1d"
_MARK = re.compile(f"{_OPEN}(\\w+)(?:{_SEP}([^{_CLOSE}]*){_SEP}([^{_CLOSE}]*))?{_CLOSE}")
_NO_VALUE = object()
_SHELL_SPECIAL = re.compile(r"[\s'\"\\$`;&|<>*?]")


def _clean(text: str) -> str:
    return text.replace(_OPEN, "").replace(_SEP, "").replace(_CLOSE, "")


def arg(name: str, value=_NO_VALUE) -> str:
    """`name` (the Python keyword; the flag's argparse `dest`), with the `value` it was
    given if any, marked for `ArgumentError` to render.

    Python: `name` / `name=repr(value)`. CLI: `--flag` / `--flag VALUE` (lists and
    tuples comma-joined, `True` as the bare switch, quoted for the shell when needed).
    """
    if not re.fullmatch(r"\w+", name):
        raise ValueError(f"argument name must be a Python identifier, got {name!r}")
    if value is _NO_VALUE:
        return f"{_OPEN}{name}{_CLOSE}"
    if value is True:
        cli = ""
    elif isinstance(value, list | tuple):
        cli = ",".join(map(str, value))
    else:
        cli = str(value)
    cli = _clean(cli)
    if not cli and value is not True or _SHELL_SPECIAL.search(cli):
        cli = shlex.quote(cli)
    return f"{_OPEN}{name}{_SEP}{_clean(repr(value))}{_SEP}{cli}{_CLOSE}"


def render(message: str, flags: dict[str, str] | None = None) -> str:
    """`message` with its `arg` marks as Python keywords, or as the `flags` given
    (Python keyword -> option string; keywords missing from it stay Python)."""
    flags = flags or {}

    def one(match):
        name, python, cli = match.groups()
        flag = flags.get(name)
        if flag is None:
            return name if python is None else f"{name}={python}"
        return flag if python is None or not cli else f"{flag} {cli}"

    return _MARK.sub(one, message)


def arguments_of(message: str) -> tuple[str, ...]:
    """The argument names marked in `message`, in order, each once."""
    return tuple(dict.fromkeys(match.group(1) for match in _MARK.finditer(message)))


class _NamesArguments:
    """The shared part of the errors below: `template` holds the marks, `str()` is Python's."""

    def __init__(self, message: str):
        super().__init__(render(message))
        self.template = message

    @property
    def arguments(self) -> tuple[str, ...]:
        """The Python keywords this message names."""
        return arguments_of(self.template)

    def render(self, flags: dict[str, str] | None = None) -> str:
        """The message with the arguments as `flags` (keyword -> option string) name them."""
        return render(self.template, flags)

    def __reduce__(self):  # pickles (multiprocessing, tf.data) with the marks kept
        return type(self), (self.template,)


class ArgumentError(_NamesArguments, ValueError):
    """A bad argument value or combination; the message names the arguments with `arg`."""


class MissingFileError(_NamesArguments, FileNotFoundError):
    """A file an argument names does not exist; the message names the argument with `arg`."""


def argument_errors(error: BaseException) -> list[_NamesArguments]:
    """`error` and its chained causes / contexts that are `ArgumentError` / `MissingFileError`."""
    found, seen, current = [], set(), error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _NamesArguments):
            found.append(current)
        current = current.__cause__ or current.__context__
    return found


__all__ = ["ArgumentError", "MissingFileError", "arg", "argument_errors", "arguments_of", "render"]
