"""File reading with clear errors, shared by the dataset readers.

Every function raises `ValueError` naming the file, what was found and what
was expected, so a user can fix the data rather than read a stack trace.
"""

from __future__ import annotations

import os

import numpy as np

from segzoo.conventions import IGNORE_LABEL  # noqa: F401  (re-exported)


def _open_image(path, noun, action, expected, read):
    """`read(img)` on the PIL image of `path`; ValueError naming the file if it fails.

    `noun` names the file in the missing-file message ("Image file"), `action` in
    the undecodable-file one ("decode image"), `expected` says what should be there.
    """
    from PIL import Image

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{noun} {path!r} does not exist.")
    try:
        with Image.open(path) as img:
            return read(img)
    except Exception as e:  # PIL raises many types for corrupt files
        raise ValueError(
            f"Cannot {action} {path!r} ({type(e).__name__}: {e}); expected {expected}."
        ) from e


def read_image(path) -> np.ndarray:
    """Decode an image file to uint8 RGB `[H, W, 3]`.

    Grayscale, palette, CMYK and alpha images are converted to RGB.

    Raises:
        ValueError: the file is missing or cannot be decoded.
    """

    def read(img):
        img.load()
        return img.convert("RGB")

    rgb = _open_image(path, "Image file", "decode image", "a readable JPEG or PNG file", read)
    return np.asarray(rgb, dtype=np.uint8)


def image_size(path) -> tuple[int, int]:
    """(height, width) from the file header only (no pixel decoding).

    Raises:
        ValueError: the file is missing or not an image.
    """
    width, height = _open_image(
        path, "Image file", "read image header of", "a JPEG or PNG file", lambda img: img.size
    )
    return height, width


def read_label_png(path) -> np.ndarray:
    """Decode a label PNG to its class-index array, uint8 `[H, W]`.

    A palette ("P") PNG gives its palette *indices* (VOC's colour PNGs encode
    class ids this way; the RGB colours are never used). A grayscale ("L")
    PNG gives its values. Other modes are rejected because their RGB colours
    are not class ids.

    Raises:
        ValueError: missing file, undecodable file, or a mode other than P / L
            (or an "I" / "I;16" PNG with values > 255).
    """

    def read(img):
        img.load()
        return img.mode, np.asarray(img)

    path = os.fspath(path)
    mode, array = _open_image(
        path,
        "Label file",
        "decode label file",
        "a palette or grayscale PNG of class ids",
        read,
    )
    if mode in ("P", "L"):
        return array.astype(np.uint8)
    if mode in ("I", "I;16", "I;16B", "I;16L") and array.size and array.max() <= 255:
        return array.astype(np.uint8)
    raise ValueError(
        f"Label file {path!r} has PIL mode {mode!r} and shape {array.shape}; expected a "
        "single-channel PNG of class ids (mode 'P' palette indices or mode 'L' grayscale), "
        "not RGB colours."
    )


def check_same_size(image: np.ndarray, mask: np.ndarray, image_path, mask_path) -> None:
    """Raise `ValueError` unless `mask` is `[H, W]` of `image`'s `[H, W, 3]`."""
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(
            f"Mask {os.fspath(mask_path)!r} is {mask.shape[1]}x{mask.shape[0]} (WxH) but "
            f"image {os.fspath(image_path)!r} is {image.shape[1]}x{image.shape[0]}; "
            "expected the same size."
        )


def check_labels(mask: np.ndarray, num_classes: int, path, ignore_label: int = IGNORE_LABEL):
    """Raise `ValueError` if `mask` has values outside `[0, num_classes)` other than 255."""
    values = np.unique(mask)
    bad = values[(values >= num_classes) & (values != ignore_label)]
    if bad.size:
        raise ValueError(
            f"Label file {os.fspath(path)!r} contains class ids {bad.tolist()}; expected "
            f"values in [0, {num_classes}) or {ignore_label} (ignore)."
        )


def read_split_list(path) -> list[str]:
    """Names listed one per line in an ImageSets-style file (first column).

    Raises:
        ValueError: the file is missing or lists no names.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"Split list {path!r} does not exist.")
    with open(path) as f:
        names = [line.split()[0] for line in f if line.strip()]
    if not names:
        raise ValueError(f"Split list {path!r} is empty; expected one image name per line.")
    return names


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


def require_data_dir(dataset, data_dir, layout) -> str:
    """`data_dir` as an absolute path; `ValueError` when it is None (the `dataset` needs
    `--data-dir`, holding `layout`) or not a directory."""
    if data_dir is None:
        raise ValueError(
            f"The {dataset!r} dataset needs data_dir (--data-dir): a directory holding {layout}."
        )
    data_dir = os.path.abspath(os.fspath(data_dir))
    if not os.path.isdir(data_dir):
        raise ValueError(f"{dataset}: data_dir {data_dir!r} is not a directory.")
    return data_dir


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
