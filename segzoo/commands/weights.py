"""`segzoo weights [list]` and `segzoo weights get NAME [--file F]`."""

from __future__ import annotations

import os


def _list():
    from segzoo.weights.catalogue import CATALOGUE, converted_path, downloads_dir

    for item in CATALOGUE.values():
        converted = os.path.isfile(converted_path(item.name))
        downloaded = os.path.isfile(os.path.join(downloads_dir(), item.file))
        state = "converted" if converted else ("downloaded" if downloaded else "not cached")
        metrics = ", ".join(f"{k} {v}" for k, v in item.metrics.items())
        checksum = (f"sha256 {item.sha256}" if item.sha256 else
                    f"sha256 {item.sha256_prefix}... (prefix, as published)" if item.sha256_prefix
                    else "sha256 unpublished")
        print(f"{item.name}  [{state}]")
        print(f"    {item.description}; --from {item.source} --arch {item.arch}")
        print(f"    {item.url}")
        print(f"    file {item.file}, {item.size}, {checksum}")
        print(f"    {metrics}")
        print(f"    licence: {item.licence}")
    return 0


def run(args) -> int:
    if getattr(args, "action", None) in (None, "list"):
        return _list()
    from segzoo.weights.catalogue import get

    print(get(args.name, file=args.file))
    return 0
