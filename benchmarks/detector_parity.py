"""Output parity of converted torchvision detectors: segzoo vs torchvision on the same weights.

    python benchmarks/detector_parity.py [--arch maskrcnn_resnet50_fpn|keypointrcnn_resnet50_fpn|both]
        [--torch-python /work/benchenv/bin/python] [--seed 0] [--images N] [--out DIR]

The torchvision side runs in a child process of `--torch-python` (an
environment with torch 2.14 / torchvision 0.29, scikit-image for photos: see
requirements-bench.txt; default: this interpreter). It builds torchvision's
detector exactly as for its COCO_V1 weights (FrozenBatchNorm2d with eps 0 by
`overwrite_eps`, 91 / 2 classes), fills it with "random but alive" weights
(`tests.weights.synthetic.detector_state_dict`: He-scaled convs, BN stats
near (0, 1), a confident classifier, so detections with score >= 0.3 exist),
writes them with `torch.save(..., _use_new_zipfile_serialization=False)`
under the OLD released key names (as the 2019 files), and runs eval-mode
inference on real photos (scikit-image's astronaut, coffee, chelsea, rocket,
motorcycle: 512x512 .. 451x300 RGB). This process then runs the user's
command `segzoo convert --from torchvision --arch ARCH --weights FILE --out
OUT.keras`, loads OUT.keras (safe_mode) and runs it on the same photos.

Parity, per torchvision detection with score >= 0.3: the segzoo detection of
the same class with the highest box IoU; required box IoU >= 0.95, |score
difference| <= 5e-3, binary mask IoU >= 0.95 (Mask R-CNN), every keypoint
within 1 px (Keypoint R-CNN). Prints one line per image and a summary with
the worst values; exits 1 when any requirement fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left")
ARCHS = ("maskrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn")


def torch_side(arch, seed, count, out):
    """Child process: weights file, photos and torchvision's detections into `out`."""
    import skimage.data
    import torch
    import torchvision
    from torchvision.models.detection import backbone_utils, keypoint_rcnn, mask_rcnn
    from torchvision.models.detection._utils import overwrite_eps
    from torchvision.ops import misc

    sys.path.insert(0, ROOT)
    from tests.weights import synthetic

    torch.set_grad_enabled(False)
    body = torchvision.models.resnet50(norm_layer=misc.FrozenBatchNorm2d)
    backbone = backbone_utils._resnet_fpn_extractor(body, 3)
    if arch == "maskrcnn_resnet50_fpn":
        model = mask_rcnn.MaskRCNN(backbone, num_classes=91)
    else:
        model = keypoint_rcnn.KeypointRCNN(backbone, num_classes=2, num_keypoints=17)
    state = synthetic.detector_state_dict(arch, seed=seed, released=True)
    tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}
    path = os.path.join(out, f"{arch}.pth")
    torch.save(tensors, path, _use_new_zipfile_serialization=False)
    reloaded = torch.load(path, weights_only=True)  # old names: renamed by _load_from_state_dict
    model.load_state_dict(reloaded)
    overwrite_eps(model, 0.0)
    model.eval()
    results = {}
    for name in PHOTOS[:count]:
        image = getattr(skimage.data, name)()
        if isinstance(image, tuple):
            image = image[0]
        image = np.ascontiguousarray(image[..., :3]).astype(np.uint8)
        np.save(os.path.join(out, f"{name}.npy"), image)
        tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
        det = model([tensor])[0]
        arrays = {"boxes": det["boxes"].numpy(), "scores": det["scores"].numpy(),
                  "labels": det["labels"].numpy()}
        if "masks" in det:
            arrays["masks"] = (det["masks"][:, 0] > 0.5).numpy()
        if "keypoints" in det:
            arrays["keypoints"] = det["keypoints"].numpy()
        np.savez_compressed(os.path.join(out, f"{name}_torchvision.npz"), **arrays)
        results[name] = len(arrays["scores"])
    print(json.dumps({"weights": path, "images": results}))


def box_iou(a, b):
    x1, y1 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x2, y2 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / np.maximum(area, 1e-9)


def compare(theirs, ours, threshold=0.3):
    """Per torchvision detection >= threshold: (box IoU, |score diff|, mask IoU, keypoint px)."""
    rows = []
    for i in np.flatnonzero(theirs["scores"] >= threshold):
        same = np.flatnonzero(ours["classes"] == theirs["labels"][i])
        if not len(same):
            rows.append((0.0, 1.0, 0.0, np.inf))
            continue
        ious = box_iou(theirs["boxes"][i], ours["boxes"][same])
        j = same[int(np.argmax(ious))]
        mask_iou, keypoint_px = np.nan, np.nan
        if "masks" in theirs:
            a, b = theirs["masks"][i], ours["masks"][j].astype(bool)
            union = np.logical_or(a, b).sum()
            mask_iou = np.logical_and(a, b).sum() / union if union else 1.0
        if "keypoints" in theirs:
            keypoint_px = float(np.abs(theirs["keypoints"][i][:, :2] - ours["keypoints"][j][:, :2]).max())
        rows.append((float(ious.max()), abs(float(theirs["scores"][i]) - float(ours["scores"][j])),
                     float(mask_iou), keypoint_px))
    return rows


def segzoo_side(arch, work, images, reuse=False):
    import tensorflow as tf

    from segzoo import cli
    from segzoo.models.base import load_checkpoint

    out = os.path.join(work, f"{arch}.keras")
    if not (reuse and os.path.isfile(out)):
        code = cli.main(["convert", "--from", "torchvision", "--arch", arch,
                         "--weights", os.path.join(work, f"{arch}.pth"), "--out", out])
        if code:
            raise SystemExit(code)
    model = load_checkpoint(out)
    all_rows = []
    for name in images:
        image = np.load(os.path.join(work, f"{name}.npy"))
        det = model(tf.constant(image[None].astype(np.float32)))
        count = int(det["num_detections"][0])
        ours = {"boxes": det["boxes"][0, :count].numpy(), "scores": det["scores"][0, :count].numpy(),
                "classes": det["classes"][0, :count].numpy()}
        if "masks" in det:
            ours["masks"] = det["masks"][0, :count].numpy()
        if "keypoints" in det:
            ours["keypoints"] = det["keypoints"][0, :count].numpy()
        theirs = dict(np.load(os.path.join(work, f"{name}_torchvision.npz")))
        rows = compare(theirs, ours)
        all_rows += rows
        if rows:
            r = np.array(rows, np.float64)
            print(f"{arch} {name} {image.shape[1]}x{image.shape[0]}: torchvision {len(theirs['scores'])} "
                  f"detections ({len(rows)} >= 0.3), segzoo {count}; min box IoU {r[:, 0].min():.4f}, "
                  f"max |score diff| {r[:, 1].max():.2e}, min mask IoU {np.nanmin(r[:, 2]) if 'masks' in theirs else float('nan'):.4f}, "
                  f"max keypoint diff {np.nanmax(r[:, 3]) if 'keypoints' in theirs else float('nan'):.3f} px", flush=True)
        else:
            print(f"{arch} {name}: torchvision has no detection >= 0.3 (segzoo {count})")
    return all_rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="both", choices=[*ARCHS, "both"])
    parser.add_argument("--torch-python", default=sys.executable)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=len(PHOTOS))
    parser.add_argument("--out", default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the torchvision outputs and converted model already in --out")
    parser.add_argument("--torch-side", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_side:
        torch_side(args.arch, args.seed, args.images, args.torch_side)
        return 0
    archs = ARCHS if args.arch == "both" else (args.arch,)
    failed = False
    for arch in archs:
        work = args.out or tempfile.mkdtemp(prefix="segzoo-parity-")
        os.makedirs(work, exist_ok=True)
        info_path = os.path.join(work, f"{arch}_torchvision.json")
        if not (args.reuse and os.path.isfile(info_path)):
            child = subprocess.run([args.torch_python, os.path.abspath(__file__), "--arch", arch, "--seed",
                                    str(args.seed), "--images", str(args.images), "--torch-side", work],
                                   capture_output=True, text=True)
            if child.returncode:
                print(f"torchvision side failed:\n{child.stderr[-3000:]}")
                return 1
            with open(info_path, "w") as f:
                f.write(child.stdout.strip().splitlines()[-1])
        with open(info_path) as f:
            info = json.load(f)
        rows = np.array(segzoo_side(arch, work, list(info["images"]), args.reuse), np.float64)
        if not len(rows):
            print(f"{arch}: no torchvision detection >= 0.3 to compare; FAILED (weights not alive)")
            failed = True
            continue
        worst = {"box IoU": rows[:, 0].min(), "score diff": rows[:, 1].max()}
        ok = worst["box IoU"] >= 0.95 and worst["score diff"] <= 5e-3
        if arch.startswith("mask"):
            worst["mask IoU"] = rows[:, 2].min()
            ok &= worst["mask IoU"] >= 0.95
        else:
            worst["keypoint px"] = rows[:, 3].max()
            ok &= worst["keypoint px"] <= 1.0
        summary = ", ".join(f"{k} {v:.4g}" for k, v in worst.items())
        print(f"{arch}: {len(rows)} torchvision detections >= 0.3 on {len(info['images'])} photos; "
              f"worst {summary}: {'PASSED' if ok else 'FAILED'}", flush=True)
        failed |= not ok
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
