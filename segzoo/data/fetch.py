"""Finding a dataset on disk, in its archive, or by downloading it (`voc`, `sbd`).

`find_or_fetch` looks for the extracted directory, then the archive next to
it, then (when asked) downloads it, checking first that the host answers so
an offline machine fails in seconds with a message saying what to put where.
"""

from __future__ import annotations

import os


def unreachable_reason(url, timeout=5.0) -> str | None:
    """None when `url`'s host accepts a TCP connection within `timeout` s, else why not.

    Checked before a download so an offline machine fails in seconds with a clear
    message instead of retrying for minutes.
    """
    import socket
    import urllib.parse

    parsed = urllib.parse.urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return None
    except OSError as e:
        return f"{parsed.hostname}:{port} is unreachable ({type(e).__name__}: {e}); offline?"


def find_or_fetch(
    manual_dir, locate, archive, url, *, name, layout, contents, dl_manager=None, download=False
):
    """Find a dataset directory under `manual_dir`, in its archive, or by downloading it.

    Tried in order: `locate(manual_dir)`; `locate` on `manual_dir/archive`
    extracted by `dl_manager`; `locate` on `url` downloaded and extracted (only
    with `download=True`, and only when `url`'s host answers). `locate(root)`
    returns the directory found below `root`, or None.

    Args:
        name: the dataset, for the message ("Pascal VOC 2012").
        layout: the directory's path parts below `manual_dir` (("VOCdevkit", "VOC2012")).
        contents: what that directory holds, for the message ("JPEGImages/, ...").

    Raises:
        ValueError: not found; says why the archive or the download did not give the
            directory, and what to put where.
    """
    manual_dir = os.fspath(manual_dir)
    found = locate(manual_dir)
    if found:
        return found
    archive = os.path.join(manual_dir, archive)
    problem = ""
    if os.path.isfile(archive) and dl_manager is not None:
        found = locate(os.fspath(dl_manager.extract(archive)))
        if found:
            return found
        problem = f" {archive!r} holds no {'/'.join(layout)} with {contents}."
    elif download and dl_manager is not None:
        offline = unreachable_reason(url)
        try:
            if offline:
                raise ConnectionError(offline)
            found = locate(os.fspath(dl_manager.download_and_extract(url)))
        except Exception as e:  # offline, proxy, server down...
            problem = f" Downloading {url} failed ({type(e).__name__}: {e})."
        if found:
            return found
    raise ValueError(
        f"{name} was not found under {manual_dir!r}.{problem} Put the extracted "
        f"{os.path.join(manual_dir, *layout)!r} (with {contents}) or the archive {archive!r} "
        f"there (from {url}); with download=True it is fetched when online."
    )
