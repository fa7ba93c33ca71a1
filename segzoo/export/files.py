"""Writing exports without ever leaving a half-written one behind.

Every export is first written into a staging path beside its destination (same
directory, so the final step is a rename on one file system), then moved into
place. An existing export at the destination is only replaced once the new one
is complete; if anything fails on the way, the old one is left untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def staging_directory(destination: str):
    """Yields a fresh directory beside `destination`; removed afterwards if still there."""
    parent = os.path.dirname(os.path.abspath(destination)) or "."
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(destination)}.tmp-", dir=parent)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_path(source: str, destination: str) -> None:
    """Moves the complete `source` (file or directory) to `destination`.

    A file replaces a file atomically (`os.replace`). A directory replacing a
    directory is renamed aside first, the new one renamed in, then the old
    one deleted: at every moment `destination` is either the old complete
    export or the new complete one (for an instant, absent).
    """
    destination = os.path.abspath(destination)
    if os.path.isdir(source) and os.path.lexists(destination):
        if not os.path.isdir(destination):
            raise ValueError(f"export path {destination!r} exists and is not a directory; "
                             "a SavedModel export is a directory")
        aside = tempfile.mkdtemp(prefix=f".{os.path.basename(destination)}.old-",
                                 dir=os.path.dirname(destination))
        old = os.path.join(aside, "export")
        os.rename(destination, old)
        try:
            os.rename(source, destination)
        except OSError:
            os.rename(old, destination)
            raise
        shutil.rmtree(aside, ignore_errors=True)
        return
    if os.path.isdir(destination) and not os.path.isdir(source):
        raise ValueError(f"export path {destination!r} is a directory; a TFLite export is a file")
    os.replace(source, destination)
