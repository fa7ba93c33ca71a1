"""Running a model over many images: inputs, batches, progress, failures, resumable outputs.

    paths = expand_inputs(["photos/", "more/*.jpg", "one.png"])   # sorted, de-duplicated
    failures = Failures()
    with Progress(len(paths), "predict") as progress:
        for batch in equal_size_batches(paths, read_image, batch_size=4, failures=failures):
            ...                                     # batch.paths, batch.images uint8 [B, H, W, 3]
            progress.update(len(batch.paths))
    failures.report()                               # "2 of 1000 images failed: ..." on stderr

- `expand_inputs`: a directory gives its image files (`IMAGE_EXTENSIONS`, not
  recursive, sorted by name); a pattern with `*`, `?` or `[` is a glob (`**`
  recursive); any other argument must be an existing file (read whatever its
  extension). Nothing is skipped silently: an argument matching no image
  raises, and two inputs that would write the same output name raise.
- `equal_size_batches`: images decoded ahead in a background thread, grouped
  into batches of one (H, W), in input order where sizes repeat; an image that
  cannot be read is recorded in `failures` (path and reason) and left out.
- `Progress`: a one-line bar with images/s and ETA on a terminal, a line about
  every 10 % (and at the end) otherwise.
- `atomic_save`: writes through a hidden temporary file in the same folder and
  `os.replace`s it, so an interrupted run never leaves a half-written output
  and `--resume` (`outputs_exist`) can trust every file it finds.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import glob
import math
import os
import sys
import time

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
_GLOB_CHARS = set("*?[")


def _is_image_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def expand_inputs(items, extensions=IMAGE_EXTENSIONS) -> list[str]:
    """Files of `items` (paths, directories, glob patterns) in order, each once.

    Raises:
        FileNotFoundError: a plain path that does not exist.
        ValueError: a directory or pattern with no image file, or two inputs
            with the same name stem (they would write the same outputs).
    """
    extensions = tuple(e.lower() for e in extensions)
    paths: list[str] = []
    for item in items:
        item = os.fspath(item)
        if os.path.isdir(item):
            found = sorted(os.path.join(item, n) for n in os.listdir(item)
                           if os.path.splitext(n)[1].lower() in extensions
                           and os.path.isfile(os.path.join(item, n)))
            if not found:
                raise ValueError(f"input directory {item!r} holds no image file "
                                 f"(expected names ending in {', '.join(extensions)})")
            paths += found
        elif _GLOB_CHARS & set(item) and not os.path.exists(item):
            found = sorted(p for p in glob.glob(item, recursive=True)
                           if os.path.isfile(p) and os.path.splitext(p)[1].lower() in extensions)
            if not found:
                raise ValueError(f"input pattern {item!r} matches no image file")
            paths += found
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"input {item!r} does not exist (expected an image file, "
                                    "a directory of images or a glob pattern)")
    unique = list(dict.fromkeys(os.path.normpath(p) for p in paths))
    by_stem: dict[str, str] = {}
    for path in unique:
        stem = output_stem(path)
        if stem in by_stem:
            raise ValueError(f"inputs {by_stem[stem]!r} and {path!r} would both write "
                             f"{stem}.png; predict them into different output directories")
        by_stem[stem] = path
    return unique


def output_stem(path: str) -> str:
    """The name outputs of `path` are written under: its file name without extension."""
    return os.path.splitext(os.path.basename(path))[0]


def outputs_exist(out_dir: str, stem: str, suffixes) -> bool:
    """True when every `out_dir/{stem}{suffix}` exists (they are written atomically)."""
    return all(os.path.isfile(os.path.join(out_dir, f"{stem}{s}")) for s in suffixes)


def atomic_save(path: str, write) -> None:
    """Calls `write(tmp_path)`, then renames `tmp_path` to `path` (same folder, same extension)."""
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    stem, ext = os.path.splitext(name)
    tmp = os.path.join(directory, f".{stem}.partial-{os.getpid()}{ext}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class Failures:
    """Inputs that could not be processed, with the reason, reported together at the end."""

    def __init__(self):
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, error: BaseException | str) -> None:
        self.items.append((path, str(error) or type(error).__name__))

    def __len__(self) -> int:
        return len(self.items)

    def report(self, total: int | None = None, stream=None) -> None:
        """Prints "N of TOTAL images failed:" and one "  PATH: REASON" line each (nothing if none)."""
        if not self.items:
            return
        stream = stream or sys.stderr
        of = f" of {total}" if total is not None else ""
        print(f"{len(self.items)}{of} images failed:", file=stream)
        for path, reason in self.items:
            print(f"  {path}: {reason}", file=stream)


class Progress:
    """Progress of `total` items (None = unknown): count, items/s and ETA on one line.

    On a terminal the line is redrawn (at most every 0.1 s); otherwise a line is
    printed about every 10 % and at the end, so logs stay short.
    """

    def __init__(self, total: int | None, description: str = "", stream=None, unit: str = "img"):
        self.total, self.description, self.unit = total, description, unit
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.count = 0
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._next_fraction = 0.1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def rate(self) -> float:
        elapsed = time.monotonic() - self.start
        return self.count / elapsed if elapsed > 0 else 0.0

    def text(self) -> str:
        rate = self.rate()
        parts = [self.description] if self.description else []
        if self.total:
            done = min(1.0, self.count / self.total)
            filled = int(round(20 * done))
            parts.append(f"{self.count}/{self.total} [{'#' * filled}{'.' * (20 - filled)}]")
        else:
            parts.append(f"{self.count}")
        parts.append(f"{rate:.1f} {self.unit}/s")
        if self.total and rate > 0:
            parts.append(f"ETA {_clock(max(0, self.total - self.count) / rate)}")
        parts.append(f"elapsed {_clock(time.monotonic() - self.start)}")
        return "  ".join(parts)

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if self.tty:
            if now - self._last_draw >= 0.1:
                self._last_draw = now
                print("\r" + self.text(), end="", file=self.stream, flush=True)
        elif self.total and self.count / self.total >= self._next_fraction and self.count < self.total:
            self._next_fraction = math.floor(10 * self.count / self.total + 1) / 10
            print(self.text(), file=self.stream, flush=True)

    def close(self) -> None:
        end = "\n"
        print(("\r" if self.tty else "") + self.text(), end=end, file=self.stream, flush=True)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclasses.dataclass
class Batch:
    """Images of one size: `paths` [B], `images` uint8 [B, H, W, 3]."""

    paths: list
    images: np.ndarray


def equal_size_batches(paths, read, batch_size: int = 1, failures: Failures | None = None,
                       prefetch: int = 8):
    """Yields `Batch`es of up to `batch_size` images of equal (H, W).

    Args:
        paths: image files, in order.
        read: `read(path) -> uint8 [H, W, 3]`; what it raises (any Exception) is
            recorded in `failures` with the path and the image left out.
        batch_size: images per batch (>= 1).
        failures: where unreadable files go (a new `Failures` if None; then they
            are lost, so pass one).
        prefetch: images decoded ahead in a background thread.

    Images wait for partners of their size while at most `2 * batch_size`
    images are held; then the oldest group goes out as it is. Memory is thus
    bounded by a few batches, whatever the folder holds.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    batch_size = int(batch_size)
    failures = failures if failures is not None else Failures()
    groups: collections.OrderedDict = collections.OrderedDict()
    held = 0

    def safe_read(path):
        try:
            image = np.asarray(read(path))
            if image.ndim != 3 or image.shape[-1] != 3 or 0 in image.shape:
                raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
            return path, image, None
        except Exception as error:  # one bad file must not stop a folder
            return path, None, error

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = collections.deque()
        iterator = iter(paths)
        for path in iterator:
            pending.append(pool.submit(safe_read, path))
            if len(pending) >= max(1, prefetch):
                break
        while pending:
            path, image, error = pending.popleft().result()
            nxt = next(iterator, None)
            if nxt is not None:
                pending.append(pool.submit(safe_read, nxt))
            if error is not None:
                failures.add(path, error)
                continue
            key = image.shape[:2]
            groups.setdefault(key, []).append((path, image))
            held += 1
            if len(groups[key]) == batch_size:
                held -= batch_size
                yield _batch(groups.pop(key))
            elif held > 2 * batch_size:
                _, items = groups.popitem(last=False)
                held -= len(items)
                yield _batch(items)
    for items in groups.values():
        yield _batch(items)


def _batch(items) -> Batch:
    images = items[0][1][None] if len(items) == 1 else np.stack([im for _, im in items])
    return Batch([p for p, _ in items], images)
