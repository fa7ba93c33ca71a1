"""Reading the user's files: images, label maps, instance-id maps, lists, with clear errors.

One image reader for every place an image is read (the `folder`,
`instance_folder`, `coco` and `labelme` datasets and `segzoo predict`):
`read_image(path)` gives uint8 ``[H, W, 3]`` (or ``[H, W, 1]``) for JPEG, PNG,
BMP and TIFF files of any bit depth.

The input rule (how pixels reach the model's 0..255 input):

- 8-bit colour images (RGB, palette, CMYK, ...; alpha dropped) are used as they are.
- Every other image — single-channel at any bit depth (8-bit grayscale
  included), and colour images with more than 8 bits per sample (16-bit, 32-bit,
  float) — is normalised per image, as microscopy tools do (CSBDeep / StarDist's
  ``normalize(x, 1, 99.8)``): with ``lo``, ``hi`` the 1st and 99.8th percentiles
  of its finite values (all channels together),
  ``v' = round(255 * clip((v - lo) / (hi - lo), 0, 1))``; when ``hi <= lo`` the
  image's min and max are used instead, and a constant image becomes 0.
  So a 12-bit microscope TIFF and its 8-bit PNG export (any linear rescale)
  give the same model input up to the 8-bit rounding, hence the same
  segmentation.

TIFF files are read with tifffile (16-bit, 32-bit and float samples, planar
or interleaved colour); files whose compression tifffile cannot decode
without its optional codecs (LZW, JPEG) are read with Pillow instead. A TIFF
holds one image: height x width, optionally 3 or 4 colour samples; stacks
(z-planes, time points, 2 or more than 4 channels) raise ``ValueError``.

Every function raises ``ValueError`` naming the file, what was found and what
was expected, so a user can fix the data rather than read a stack trace.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from segzoo.conventions import IGNORE_LABEL
from segzoo.errors import ArgumentError, arg

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
TIFF_EXTENSIONS = (".tif", ".tiff")
PERCENTILES = (1.0, 99.8)
# Pillow's single-channel modes (the rest decode to colour).
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")


@dataclasses.dataclass(frozen=True)
class ImageHeader:
    """What a file's header says: size in pixels and channels (1 gray, 3 colour)."""

    height: int
    width: int
    channels: int


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF


def _is_tiff(source) -> bool:
    """A TIFF by its first bytes (a path or a binary file object)."""
    if isinstance(source, str):
        with open(source, "rb") as f:
            head = f.read(4)
    else:
        head = source.read(4)
        source.seek(0)
    return head in _TIFF_MAGIC


def _source(path_or_bytes, name):
    """(a path or a BytesIO, the name for messages) of a path or of an image file's bytes."""
    if isinstance(path_or_bytes, bytes | bytearray):
        import io

        return io.BytesIO(path_or_bytes), name or "<image bytes>"
    path = os.fspath(path_or_bytes)
    return path, name or path


def _check_exists(path, noun):
    if not os.path.isfile(path):
        raise ValueError(f"{noun} {path!r} does not exist.")


def _pixel_limit():
    from PIL import Image

    return None if Image.MAX_IMAGE_PIXELS is None else 2 * Image.MAX_IMAGE_PIXELS


def _open_pil(path, noun, action, expected, read, name=None):
    """`read(img)` on the PIL image of `path` (or a file object called `name`); ValueError
    naming the file if it fails."""
    from PIL import Image

    if isinstance(path, str | os.PathLike):
        path = os.fspath(path)
        _check_exists(path, noun)
    shown = name or path
    try:
        with Image.open(path) as img:
            return read(img)
    except Image.DecompressionBombError as e:
        raise ValueError(
            f"Cannot {action} {shown!r}: {e} Pillow refuses images over {_pixel_limit()} pixels "
            "(PIL.Image.MAX_IMAGE_PIXELS x 2); expected a smaller image (split it into tiles)."
        ) from e
    except Exception as e:  # PIL raises many types for corrupt files
        raise ValueError(
            f"Cannot {action} {shown!r} ({type(e).__name__}: {e}); expected {expected}."
        ) from e


def _tiff_layout(shape, axes, path):
    """(height, width, channels, planar) of a TIFF series (module doc's rule).

    `axes` is tifffile's series axes string ("YX", "YXS", "SYX", "CYX", "ZYX",
    ...): a length-1 axis is dropped; a 3- or 4-long sample ("S") or channel
    ("C") axis is colour; anything else (Z, T, pages) is a stack.
    """
    sizes = dict(zip(axes, (int(d) for d in shape), strict=True))
    others = [(i, a, int(d)) for i, (a, d) in enumerate(zip(axes, shape, strict=True))
              if a not in "YX" and int(d) != 1]
    if "Y" in sizes and "X" in sizes:
        if not others:
            return sizes["Y"], sizes["X"], 1, False
        if len(others) == 1 and others[0][1] in "SC" and others[0][2] in (3, 4):
            return sizes["Y"], sizes["X"], 3, others[0][0] < axes.index("Y")
    raise ValueError(
        f"TIFF {os.fspath(path)!r} holds an array of shape {tuple(int(d) for d in shape)} "
        f"(axes {axes}); expected one 2-D image (height x width, optionally 3 or 4 colour "
        "samples). Stacks of z-planes, time points, pages or 2 / more than 4 channels are "
        "not one image: save one plane (or an RGB composite) per file."
    )


def _read_tiff(path, header_only=False, name=None):
    """Raw array of a TIFF (tifffile; Pillow when a codec is missing), or its ImageHeader.
    `path` may be a binary file object (then `name` names it in messages)."""
    import tifffile

    name = name or path

    def cannot(e):
        return ValueError(
            f"Cannot decode image {name!r} ({type(e).__name__}: {e}); expected a readable TIFF."
        )

    try:
        with tifffile.TiffFile(path) as tif:
            shape, axes = tif.series[0].shape, tif.series[0].axes
    except Exception as e:  # tifffile.TiffFileError, OSError, struct errors...
        raise cannot(e) from e
    height, width, channels, planar = _tiff_layout(shape, axes, name)
    limit = _pixel_limit()
    if limit is not None and height * width > limit:
        raise ValueError(
            f"TIFF {name!r} is {width}x{height} = {height * width} pixels, more than the "
            f"{limit} pixels an image may have (PIL.Image.MAX_IMAGE_PIXELS x 2); expected a "
            "smaller image (split it into tiles)."
        )
    if header_only:
        return ImageHeader(height, width, channels)
    try:
        if not isinstance(path, str):
            path.seek(0)
        with tifffile.TiffFile(path) as tif:
            array = tif.series[0].asarray()
    except Exception as e:
        if "imagecodecs" in str(e):  # "<COMPRESSION.LZW: 5> requires the 'imagecodecs' package"
            if not isinstance(path, str):
                path.seek(0)
            return _open_pil(path, "Image file", "decode image", "a readable TIFF", _pil_array,
                             name=name)
        raise cannot(e) from e
    samples = array.size // (height * width)
    if planar:
        return np.moveaxis(array.reshape(samples, height, width), 0, -1)[..., :3]
    if samples > 1:
        return array.reshape(height, width, samples)[..., :3]
    return array.reshape(height, width)


def _pil_array(img):
    """Raw array of a PIL image: [H, W] for single-channel modes, [H, W, 3] colour."""
    img.load()
    if img.mode == "1":
        return np.asarray(img.convert("L"))
    if img.mode == "LA":
        return np.asarray(img.getchannel(0))
    if img.mode in _GRAY_MODES:
        array = np.asarray(img)
        return array.astype(array.dtype.newbyteorder("=")) if array.dtype.byteorder == ">" else array
    return np.asarray(img.convert("RGB"))


def read_raw_image(path, name=None) -> np.ndarray:
    """The pixels of an image file in their own dtype: [H, W] or [H, W, 3] (alpha dropped).

    `path` may also be the file's bytes (labelme's embedded imageData); `name`
    then names them in messages.

    Raises:
        ValueError: no such file, or it cannot be decoded, is too large, or is a TIFF stack.
    """
    source, name = _source(path, name)
    if isinstance(source, str):
        _check_exists(source, "Image file")
    if _is_tiff(source):
        return _read_tiff(source, name=name)
    return _open_pil(source, "Image file", "decode image",
                     "a readable JPEG, PNG, BMP or TIFF file", _pil_array, name=name)


def to_uint8(array) -> np.ndarray:
    """The input rule of the module doc: uint8 [H, W] or [H, W, 3] of any image array."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == np.uint8 and array.ndim == 3:
        return array
    if array.dtype == bool:
        array = array.astype(np.uint8)
    values = array.astype(np.float32)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(array.shape, np.uint8)
    lo, hi = np.percentile(finite, PERCENTILES)
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        return np.zeros(array.shape, np.uint8)
    scaled = np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    scaled = np.nan_to_num(scaled, nan=0.0)
    return np.rint(scaled * 255.0).astype(np.uint8)


def to_channels(image, channels) -> np.ndarray:
    """uint8 [H, W] / [H, W, 3] as [H, W, channels]: gray repeated to 3, colour to 1 by
    ITU-R 601 luma (0.299 R + 0.587 G + 0.114 B, as PIL's "L"); `channels=None` keeps
    the image's own (1 or 3)."""
    if image.ndim == 2:
        image = image[..., None]
    have = image.shape[-1]
    if channels is None or channels == have:
        return image
    if channels == 3 and have == 1:
        return np.repeat(image, 3, axis=-1)
    if channels == 1 and have == 3:
        luma = image.astype(np.float32) @ np.asarray([0.299, 0.587, 0.114], np.float32)
        return np.rint(luma).astype(np.uint8)[..., None]
    raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")


def read_image(path, channels=3, name=None) -> np.ndarray:
    """Decode an image file to the model's input: uint8 ``[H, W, channels]``.

    JPEG, PNG, BMP and TIFF of any bit depth; 8-bit colour as is, everything
    else percentile-normalised (the module doc's input rule), then gray
    repeated to RGB or colour reduced to luma as `channels` (3, 1 or None =
    the file's own) asks. `path` may also be the bytes of an image file
    (`name` then names them in messages).

    Raises:
        ValueError: no such file; the file cannot be decoded, is over Pillow's decompression-bomb
            limit, or is a TIFF stack; the message names the file.
    """
    return to_channels(to_uint8(read_raw_image(path, name)), channels)


def image_header(path) -> ImageHeader:
    """Height, width and channels (1 or 3) from the file header (no pixel decoding).

    Raises:
        ValueError: no such file, or it is not an image (or a TIFF stack, or too large).
    """
    path = os.fspath(path)
    _check_exists(path, "Image file")
    if _is_tiff(path):
        return _read_tiff(path, header_only=True)

    def read(img):
        return ImageHeader(img.size[1], img.size[0], 1 if img.mode in _GRAY_MODES else 3)

    return _open_pil(path, "Image file", "read image header of",
                     "a JPEG, PNG, BMP or TIFF file", read)


def image_size(path) -> tuple[int, int]:
    """(height, width) from the file header only (no pixel decoding)."""
    header = image_header(path)
    return header.height, header.width


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
    mode, array = _open_pil(
        path, "Label file", "decode label file", "a palette or grayscale PNG of class ids", read
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


def read_instance_ids(path) -> np.ndarray:
    """Decode an instance-id map to int64 `[H, W]` (0 = background, any other value one
    instance; ids need not be contiguous).

    PNG: 8- or 16-bit grayscale values, or a palette PNG's indices. TIFF: any
    integer dtype (float TIFFs must hold whole numbers). An RGB image is
    rejected: colours are not ids.

    Raises:
        ValueError: no such file; undecodable, colour, negative or non-integer values; names the file.
    """
    path = os.fspath(path)
    _check_exists(path, "Mask file")
    expected = "a single-channel 8/16-bit PNG or TIFF of instance ids (0 = background)"
    if _is_tiff(path):
        array = _read_tiff(path)
    else:

        def read(img):
            img.load()
            if img.mode in ("P", "L", "I", "I;16", "I;16L", "I;16B", "I;16N", "1"):
                array = np.asarray(img)
                return array.astype(array.dtype.newbyteorder("="))
            return np.asarray(img.convert("RGB"))

        array = _open_pil(path, "Mask file", "decode mask", expected, read)
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"Mask {path!r} has shape {array.shape}; expected {expected}, not colours.")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError(f"Mask {path!r} holds non-integer values; expected {expected}.")
    elif array.dtype.kind not in "iub":
        raise ValueError(f"Mask {path!r} has dtype {array.dtype}; expected {expected}.")
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError(f"Mask {path!r} holds negative ids ({array.min()}); expected {expected}.")
    return array


def check_same_size(image: np.ndarray, mask: np.ndarray, image_path, mask_path) -> None:
    """Raise `ValueError` unless `mask` is `[H, W]` of `image`'s `[H, W, C]`."""
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


def files_by_stem(directory, extensions, dataset: str, what: str) -> dict[str, str]:
    """{name stem: path} of the files in `directory` whose extension (any case) is in
    `extensions`, sorted by file name.

    Raises:
        ValueError: two files share a stem (``a.png`` and ``a.jpg``): naming both, since
            each name must pair with exactly one image / mask.
    """
    files = {}
    for filename in sorted(os.listdir(directory)):
        stem, ext = os.path.splitext(filename)
        if ext.lower() not in extensions:
            continue
        if stem in files:
            raise ValueError(
                f"{dataset}: two {what} named {stem!r} in {directory!r} "
                f"({os.path.basename(files[stem])}, {filename}); expected one per name."
            )
        files[stem] = os.path.join(directory, filename)
    return files


def paired_stems(dataset: str, split: str, images: dict, masks: dict, image_dir, mask_dir,
                 mask_suffix: str, image_suffix: str) -> list[str]:
    """The sorted names of a split whose image and mask both exist and have one size.

    `images` / `masks` are {stem: path} (`files_by_stem`); `mask_suffix` / `image_suffix`
    name the accepted extensions in the errors (e.g. ".png|tif", "jpg|png|tif").

    Raises:
        ValueError: an image without mask, a mask without image, or a mask whose size
            differs from its image's, naming the file and what was expected.
    """
    missing = sorted(set(images) - set(masks))
    if missing:
        raise ValueError(
            f"{dataset}: {len(missing)} image(s) of split {split!r} have no mask, e.g. "
            f"{images[missing[0]]!r}; expected {os.path.join(mask_dir, missing[0])}{mask_suffix}."
        )
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise ValueError(
            f"{dataset}: {len(orphans)} mask(s) of split {split!r} have no image, e.g. "
            f"{masks[orphans[0]]!r}; expected an image {orphans[0]}.{image_suffix} in {image_dir!r}."
        )
    for stem in sorted(images):
        image_hw = image_size(images[stem])
        mask_hw = image_size(masks[stem])
        if image_hw != mask_hw:
            raise ValueError(
                f"{dataset}: mask {masks[stem]!r} is {mask_hw[1]}x{mask_hw[0]} (WxH) but image "
                f"{images[stem]!r} is {image_hw[1]}x{image_hw[0]}; expected the same size."
            )
    return sorted(images)


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


def read_class_names(path, dataset) -> list[str] | None:
    """Class names of a `classes.txt` (one a line, blank lines skipped); None if absent.

    Raises:
        ValueError: the file is empty or names a class twice.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise ValueError(f"{dataset}: {path!r} is empty; expected one class name per line.")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{dataset}: {path!r} names {duplicates} more than once; expected "
                         "each class once.")
    return names


def read_json(path, dataset):
    """The parsed JSON of `path`; ValueError naming it when missing or malformed."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{dataset}: cannot read {path!r} ({type(e).__name__}: {e}); "
                         "expected a JSON file.") from e


def require_data_dir(dataset, data_dir, layout) -> str:
    """`data_dir` as an absolute path; `ValueError` when it is None (the `dataset` needs
    `--data-dir`, holding `layout`) or not a directory."""
    if data_dir is None:
        raise ArgumentError(
            f"The {dataset!r} dataset needs {arg('data_dir')}: a directory holding {layout}."
        )
    data_dir = os.path.abspath(os.fspath(data_dir))
    if not os.path.isdir(data_dir):
        raise ValueError(f"{dataset}: data_dir {data_dir!r} is not a directory.")
    return data_dir
