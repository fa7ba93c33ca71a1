"""Published checkpoints segzoo converts, and their cache (`segzoo weights list|get`).

The cache lives in ``$SEGZOO_HOME`` (default ``~/.cache/segzoo``):

    $SEGZOO_HOME/downloads/FILE          the published file as downloaded / copied
    $SEGZOO_HOME/converted/NAME.keras    the converted segzoo checkpoint
                          (NAME.weights.h5 for ResNet backbones)

`get(name)` takes the published file from the cache, else from ``file=`` (a
copy the user brought), else downloads it (resuming a ``.part`` file with an
HTTP Range request), verifies its checksum, moves it into place atomically,
converts it once, and returns the converted path. `resolve_checkpoint` lets
``--checkpoint NAME`` (and ``--init-from NAME``) take a catalogue name.

Checksums: torchvision names its files ``NAME-<first 8 hex digits of the
SHA-256>.pth`` and checks that prefix (``torch.hub.check_hash``); those
prefixes are recorded here (``sha256`` holds the full digest where known).
The FCN authors publish no checksum: their files are checked by structure
(the conversion demands every FCN layer) and `get` prints the SHA-256 it saw.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
import urllib.error
import urllib.request

from segzoo.errors import MissingFileError, arg

_TORCHVISION_LICENCE = ("BSD-3-Clause (torchvision); trained on {data}, whose terms apply "
                        "to the weights")
_FCN_LICENCE = ("BSD-2-Clause, unrestricted use (fcn.berkeleyvision.org: Caffe's licence and "
                "the BVLC model licence)")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One published checkpoint.

    Attributes:
        name: catalogue name (``mask_rcnn_r50_fpn_coco``).
        source / arch: the `convert` arguments (``--from``, ``--arch``).
        url: where it is published; file: its expected file name.
        sha256: full SHA-256 hex digest, or None when unpublished.
        sha256_prefix: the leading hex digits the publisher checks (torchvision's).
        size: the publisher's size (string, as published).
        metrics: reported metrics (dict name -> value), with the evaluation set.
        licence: licence of the weights.
        description: one line.
    """

    name: str
    source: str
    arch: str
    url: str
    file: str
    sha256: str | None
    sha256_prefix: str | None
    size: str
    metrics: dict
    licence: str
    description: str

    @property
    def converted_name(self):
        return self.name + (".weights.h5" if self.arch.startswith("resnet") else ".keras")


def _torchvision(name, arch, file, size, metrics, data, description):
    return Entry(name, "torchvision", arch, f"https://download.pytorch.org/models/{file}", file,
                 None, file.rsplit("-", 1)[1].split(".")[0], size, metrics,
                 _TORCHVISION_LICENCE.format(data=data), description)


def _fcn(name, arch, file, metrics, description):
    return Entry(name, "caffe", arch, f"http://dl.caffe.berkeleyvision.org/{file}", file,
                 None, None, "~538 MB (134.5 M float32 values)", metrics, _FCN_LICENCE,
                 description)


CATALOGUE = {e.name: e for e in (
    _torchvision("mask_rcnn_r50_fpn_coco", "maskrcnn_resnet50_fpn",
                 "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth", "169.8 MiB",
                 {"COCO-val2017 box AP": 37.9, "COCO-val2017 mask AP": 34.6},
                 "COCO 2017 (CC BY 4.0 annotations, Flickr images)",
                 "Mask R-CNN R50-FPN, torchvision MaskRCNN_ResNet50_FPN_Weights.COCO_V1"),
    _torchvision("keypoint_rcnn_r50_fpn_coco", "keypointrcnn_resnet50_fpn",
                 "keypointrcnn_resnet50_fpn_coco-fc266e95.pth", "226.1 MiB",
                 {"COCO-val2017 box AP": 54.6, "COCO-val2017 keypoint AP": 65.0},
                 "COCO 2017 person keypoints (CC BY 4.0 annotations, Flickr images)",
                 "Keypoint R-CNN R50-FPN, torchvision KeypointRCNN_ResNet50_FPN_Weights.COCO_V1"),
    _torchvision("resnet18_imagenet", "resnet18", "resnet18-f37072fd.pth", "44.7 MiB",
                 {"ImageNet-1K acc@1": 69.758, "ImageNet-1K acc@5": 89.078},
                 "ImageNet-1K (non-commercial research terms)",
                 "ResNet-18 backbone, torchvision ResNet18_Weights.IMAGENET1K_V1"),
    _torchvision("resnet34_imagenet", "resnet34", "resnet34-b627a593.pth", "83.3 MiB",
                 {"ImageNet-1K acc@1": 73.314, "ImageNet-1K acc@5": 91.42},
                 "ImageNet-1K (non-commercial research terms)",
                 "ResNet-34 backbone, torchvision ResNet34_Weights.IMAGENET1K_V1"),
    _torchvision("resnet50_imagenet", "resnet50", "resnet50-0676ba61.pth", "97.8 MiB",
                 {"ImageNet-1K acc@1": 76.13, "ImageNet-1K acc@5": 92.862},
                 "ImageNet-1K (non-commercial research terms)",
                 "ResNet-50 backbone, torchvision ResNet50_Weights.IMAGENET1K_V1"),
    _torchvision("resnet101_imagenet", "resnet101", "resnet101-63fe2227.pth", "170.5 MiB",
                 {"ImageNet-1K acc@1": 77.374, "ImageNet-1K acc@5": 93.546},
                 "ImageNet-1K (non-commercial research terms)",
                 "ResNet-101 backbone, torchvision ResNet101_Weights.IMAGENET1K_V1"),
    _fcn("fcn32s_voc", "fcn32s", "fcn32s-heavy-pascal.caffemodel",
         {"VOC2011 seg11valid mean IU": 63.6}, "FCN-32s PASCAL VOC, the FCN authors' Caffe model"),
    _fcn("fcn16s_voc", "fcn16s", "fcn16s-heavy-pascal.caffemodel",
         {"VOC2011 seg11valid mean IU": 65.0}, "FCN-16s PASCAL VOC, the FCN authors' Caffe model"),
    _fcn("fcn8s_voc", "fcn8s", "fcn8s-heavy-pascal.caffemodel",
         {"VOC2011 seg11valid mean IU": 65.5, "VOC2012 test mean IU": 67.2},
         "FCN-8s PASCAL VOC, the FCN authors' Caffe model"),
)}


def home():
    """The cache root: ``$SEGZOO_HOME`` or ``~/.cache/segzoo``."""
    return os.path.abspath(os.path.expanduser(
        os.environ.get("SEGZOO_HOME") or os.path.join("~", ".cache", "segzoo")))


def downloads_dir():
    return os.path.join(home(), "downloads")


def converted_path(name):
    """Where the converted file of catalogue entry `name` lives (it may not exist yet)."""
    return os.path.join(home(), "converted", entry(name).converted_name)


def entry(name):
    """The catalogue `Entry` called `name`; ValueError listing the names otherwise."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise ValueError(f"{name!r} is not in the weights catalogue; known: "
                         f"{', '.join(CATALOGUE)} (`segzoo weights list`)") from None


def sha256_of(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(item, path):
    """Checks the file's SHA-256 against the entry; returns the digest. ValueError on mismatch."""
    digest = sha256_of(path)
    if item.sha256 and digest != item.sha256:
        raise ValueError(f"{path}: SHA-256 {digest} differs from {item.name}'s {item.sha256}; "
                         "the file is corrupt or another one")
    if item.sha256_prefix and not digest.startswith(item.sha256_prefix):
        raise ValueError(f"{path}: SHA-256 {digest[:16]}... does not start with "
                         f"{item.sha256_prefix} as {item.file} must; the file is corrupt or "
                         "another one")
    return digest


def download(url, destination, timeout=30.0, progress=True):
    """Downloads `url` to `destination` via ``destination.part``, resuming a partial file.

    The ``.part`` file grows in place; an HTTP Range request continues it
    (a server answering 200 instead of 206 restarts it). Only a complete file
    is renamed onto `destination`. Raises OSError (urllib errors) when offline.
    """
    part = destination + ".part"
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code != 416:  # 416: the .part is already complete
            raise
        os.replace(part, destination)
        return destination
    with response:
        mode = "ab" if have and response.status == 206 else "wb"
        total = response.headers.get("Content-Length")
        total = int(total) + (have if mode == "ab" else 0) if total else None
        done = have if mode == "ab" else 0
        with open(part, mode) as f:
            for block in iter(lambda: response.read(1 << 20), b""):
                f.write(block)
                done += len(block)
                if progress and total:
                    print(f"\r{os.path.basename(destination)}: {done / total:6.1%}", end="",
                          file=sys.stderr)
        if progress and total:
            print(file=sys.stderr)
        if total is not None and done != total:
            raise OSError(f"download of {url} stopped at {done} of {total} bytes; run again to resume")
    os.replace(part, destination)
    return destination


def fetch(name, file=None, offline=None):
    """The published file of `name` in the cache: already there, copied from `file`, or downloaded.

    Args:
        file: a copy of the published file the user brought (``--file``).
        offline: do not try the network (default: ``$SEGZOO_OFFLINE`` set).
    Returns:
        path under `downloads_dir()`, checksum verified.
    Raises:
        FileNotFoundError: absent and not downloadable (one line naming the file,
            its URL and where to put it).
        ValueError: checksum mismatch.
    """
    item = entry(name)
    destination = os.path.join(downloads_dir(), item.file)
    if file is not None:
        file = os.fspath(file)
        if not os.path.isfile(file):
            raise MissingFileError(f"{arg('file', file)} does not exist (expected {item.file})")
        verify(item, file)
        os.makedirs(downloads_dir(), exist_ok=True)
        tmp = destination + f".tmp-{os.getpid()}"
        try:
            shutil.copyfile(file, tmp)
            os.replace(tmp, destination)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return destination
    if os.path.isfile(destination):
        return destination
    if offline is None:
        offline = bool(os.environ.get("SEGZOO_OFFLINE"))
    reason = "offline ($SEGZOO_OFFLINE is set)"
    if not offline:
        try:
            download(item.url, destination)
            verify(item, destination)
            return destination
        except ValueError:
            os.remove(destination)
            raise
        except OSError as error:
            reason = f"download failed: {getattr(error, 'reason', error)}"
    raise MissingFileError(
        f"{name}: {item.file} is not in {downloads_dir()}/ and could not be fetched ({reason}); "
        f"download {item.url} and put it there, or pass the copy you have as {arg('file', 'PATH')}")


def get(name, file=None, offline=None, verbose=True):
    """Path of the converted checkpoint of `name`: fetched and converted once, then cached."""
    from segzoo.weights.convert import convert

    item = entry(name)
    out = converted_path(name)
    if file is None and os.path.isfile(out):
        return out
    source = fetch(name, file=file, offline=offline)
    if verbose:
        print(f"{name}: converting {source}", file=sys.stderr)
    convert(item.source, item.arch, source, out, verbose=verbose)
    return out


def resolve_checkpoint(value):
    """``--checkpoint`` value -> path: an existing path as is, a catalogue name via `get`.

    Anything else is returned unchanged (the caller reports the missing file).
    """
    if value is None or os.path.exists(os.fspath(value)) or os.fspath(value) not in CATALOGUE:
        return value
    item = CATALOGUE[os.fspath(value)]
    if item.arch.startswith("resnet"):
        raise ValueError(f"{value!r} is a backbone, not a checkpoint: give it to a model as the "
                         f"model arguments backbone_weights=(the path `segzoo weights get {value}` "
                         "prints) and backbone_layout=torchvision")
    return get(item.name)


def imagenet_resnet_path(depth, layout="torchvision"):
    """`backbone_weights="imagenet"` from torchvision's ImageNet file, converted once into the cache.

    Used for ResNet-18/34 (Keras has no ImageNet weights for them) and for any
    torchvision-layout ResNet. Raises ValueError for the keras layout (the
    torchvision tensors need the v1.5 layout: bias-free convs, torch
    normalisation) and FileNotFoundError (one line) when offline and absent.
    """
    name = f"resnet{depth}_imagenet"
    if name not in CATALOGUE:
        raise ValueError(f"weights='imagenet' for layout='torchvision': torchvision ImageNet weights "
                         f"are catalogued for ResNet-18/34/50/101, not ResNet-{depth}")
    if layout != "torchvision":
        raise ValueError(f"ResNet-{depth} ImageNet weights are torchvision's: build the backbone with "
                         "layout='torchvision' (Mask R-CNN: backbone_layout='torchvision')")
    return get(name, verbose=False)
