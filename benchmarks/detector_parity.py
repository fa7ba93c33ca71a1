"""Output parity of converted torchvision detectors: segzoo vs torchvision on the same weights.

    python benchmarks/detector_parity.py [--arch maskrcnn_resnet50_fpn|keypointrcnn_resnet50_fpn|both]
        [--torch-python /work/benchenv/bin/python] [--seed 0] [--images N] [--out DIR]

The torchvision side runs in a child process of `--torch-python` (an
environment with torch 2.14 / torchvision 0.29, scikit-image for photos: see
requirements-bench.txt; default: this interpreter). It builds torchvision's
detector exactly as for its COCO_V1 weights (FrozenBatchNorm2d with eps 0 by
`overwrite_eps`, 91 / 2 classes), fills it with "random but alive" weights
(`tests.weights.synthetic.detector_state_dict`: He-scaled convs, BN stats
near (0, 1), a centred and scaled classifier, so every photo has detections
with score >= 0.3),
writes them with `torch.save(..., _use_new_zipfile_serialization=False)`
under the OLD released key names (as the 2019 files), and runs eval-mode
inference on real photos (scikit-image's astronaut, coffee, chelsea, rocket,
stereo_motorcycle: 512x512 .. 741x500 RGB). This process then runs the user's
command `segzoo convert --from torchvision --arch ARCH --weights FILE --out
OUT.keras`, loads OUT.keras (safe_mode) and runs it on the same photos.

Parity, per torchvision detection with score >= 0.3: the segzoo detection of
the same class with the highest box IoU; required box IoU >= 0.95, |score
difference| <= 5e-3, binary mask IoU >= 0.95 (Mask R-CNN), every keypoint
within 1 px (Keypoint R-CNN). Keypoint R-CNN also checks the decoding on its
own: segzoo's `heatmaps_to_keypoints` on torchvision's heatmap logits and
boxes (hooked out of its roi_heads) against torchvision's
`heatmaps_to_keypoints` (bicubic resize, argmax, cell centre), xy and score
within 1e-3. A keypoint more than 1 px away is reported and accepted only
as a near-tie: random weights give flat heatmaps with several peaks of
almost equal height, and when torchvision's own resized heatmap at segzoo's
keypoint is within the run's heatmap-logit noise (the max keypoint score
difference) of its maximum, which peak wins is float32 rounding, not a
decoding difference (the verdict then says "near-tie"). Prints one line per photo (detections, >= 0.3, min box IoU, max
|score diff|, min mask IoU or max keypoint distance) and a summary with the
worst values; exits 1 when any requirement fails. Not a test (it needs
torch): run it by hand after changing the detectors, the RoI ops or the
converter; it takes ~5-10 min on 2 CPU cores per arch.

    python benchmarks/detector_parity.py --arch both --torch-python /work/benchenv/bin/python
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
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle")
ARCHS = ("maskrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn")


def torch_side(arch, seed, count, out):
    """Child process: weights file, photos and torchvision's detections into `out`."""
    import skimage.data
    import torch
    import torchvision
    from torchvision.models.detection import backbone_utils, keypoint_rcnn, mask_rcnn
    from torchvision.models.detection._utils import overwrite_eps
    from torchvision.models.detection.roi_heads import heatmaps_to_keypoints
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
    captured = {}
    if arch.startswith("keypoint"):  # the heatmap logits and the boxes they are decoded in
        model.roi_heads.keypoint_predictor.register_forward_hook(
            lambda module, inputs, output: captured.__setitem__("heatmaps", output))
        model.roi_heads.register_forward_hook(
            lambda module, inputs, output: captured.__setitem__("boxes", output[0][0]["boxes"]))
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
            arrays["keypoints_scores"] = det["keypoints_scores"].numpy()
            # torchvision's own decoding of the heatmaps, in the resized image's pixels.
            xy, kp_scores = heatmaps_to_keypoints(captured["heatmaps"], captured["boxes"])
            arrays.update(heatmaps=captured["heatmaps"].numpy(), heatmap_boxes=captured["boxes"].numpy(),
                          decoded=xy[..., :2].numpy(), decoded_scores=kp_scores.numpy())
        np.savez_compressed(os.path.join(out, f"{name}_torchvision.npz"), **arrays)
        results[name] = len(arrays["scores"])
    print(json.dumps({"weights": path, "images": results}))


def box_iou(a, b):
    x1, y1 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x2, y2 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / np.maximum(area, 1e-9)


def peak_gap(theirs, i, k, xy):
    """How far below the maximum of torchvision's resized heatmap (detection i, keypoint k) point `xy` is.

    `xy` is in original-image pixels (segzoo's keypoint); the map is
    torchvision's heatmap logits resized as in `heatmaps_to_keypoints` (the
    bicubic resize transcribed by segzoo's `cubic_resize_matrix`). Returns the
    logit gap (0: `xy` is on a maximum as high as torchvision's).
    """
    from segzoo.models.mask_rcnn.keypoint_ops import cubic_resize_matrix

    x1, y1, x2, y2 = theirs["heatmap_boxes"][i]
    width, height = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    map_w, map_h = int(np.ceil(width)), int(np.ceil(height))
    size = theirs["heatmaps"].shape[-1]
    resized = (cubic_resize_matrix(size, map_h).numpy() @ theirs["heatmaps"][i, k]
               @ cubic_resize_matrix(size, map_w).numpy().T)
    ratio = theirs["keypoints"][i, k, :2] / theirs["decoded"][i, k]  # original / resized pixels
    x, y = np.asarray(xy) / ratio
    col = int(np.clip(np.floor((x - x1) * map_w / width), 0, map_w - 1))
    row = int(np.clip(np.floor((y - y1) * map_h / height), 0, map_h - 1))
    return float(resized.max() - resized[row, col])


def compare(theirs, ours, threshold=0.3):
    """Per torchvision detection >= threshold: (box IoU, |score diff|, mask IoU, keypoint px,
    keypoint score diff, keypoints > 1 px away, their largest `peak_gap`)."""
    rows = []
    for i in np.flatnonzero(theirs["scores"] >= threshold):
        same = np.flatnonzero(ours["classes"] == theirs["labels"][i])
        if not len(same):
            rows.append((0.0, 1.0, 0.0, np.inf, np.inf, np.inf, np.inf))
            continue
        ious = box_iou(theirs["boxes"][i], ours["boxes"][same])
        j = same[int(np.argmax(ious))]
        mask_iou, keypoint_px, keypoint_score, far, gap = np.nan, np.nan, np.nan, 0, 0.0
        if "masks" in theirs:
            a, b = theirs["masks"][i], ours["masks"][j].astype(bool)
            union = np.logical_or(a, b).sum()
            mask_iou = np.logical_and(a, b).sum() / union if union else 1.0
        if "keypoints" in theirs:
            distance = np.linalg.norm(theirs["keypoints"][i][:, :2] - ours["keypoints"][j][:, :2], axis=-1)
            keypoint_px = float(distance.max())
            keypoint_score = float(np.abs(theirs["keypoints_scores"][i] - ours["keypoints"][j][:, 2]).max())
            far_keypoints = np.flatnonzero(distance > 1.0)
            far = len(far_keypoints)
            gap = max((peak_gap(theirs, i, k, ours["keypoints"][j][k, :2]) for k in far_keypoints), default=0.0)
        rows.append((float(ious.max()), abs(float(theirs["scores"][i]) - float(ours["scores"][j])),
                     float(mask_iou), keypoint_px, keypoint_score, far, gap))
    return rows


def decoding_check(theirs):
    """segzoo's `heatmaps_to_keypoints` on torchvision's heatmaps and boxes vs torchvision's own decoding.

    Returns (keypoints compared, max |xy diff| px, max |score diff|).
    """
    from segzoo.models.mask_rcnn.keypoint_ops import heatmaps_to_keypoints

    maps = np.transpose(theirs["heatmaps"], (0, 2, 3, 1))  # NCHW -> [R, 56, 56, P]
    ours = heatmaps_to_keypoints(maps, theirs["heatmap_boxes"]).numpy()
    return (ours.shape[0] * ours.shape[1], float(np.abs(ours[..., :2] - theirs["decoded"]).max(initial=0.0)),
            float(np.abs(ours[..., 2] - theirs["decoded_scores"]).max(initial=0.0)))


def figures(arch, rows):
    """The parity figures of `rows` (from `compare`) as an ordered dict."""
    r = np.array(rows, np.float64)
    out = {"min box IoU": r[:, 0].min(), "max |score diff|": r[:, 1].max()}
    if arch.startswith("mask"):
        out["min mask IoU"] = r[:, 2].min()
    else:
        out["max keypoint distance px"] = r[:, 3].max()
        out["max keypoint score diff"] = r[:, 4].max()
        out["keypoints > 1 px"] = int(r[:, 5].sum())
        if out["keypoints > 1 px"]:
            out["their max peak gap"] = r[:, 6].max()
    return out


def segzoo_side(arch, work, images, reuse=False):
    """Converts with the user's command, runs the photos; returns (rows, decoding checks)."""
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
    all_rows, decoding = [], []
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
        line = (f"{arch} {name} {image.shape[1]}x{image.shape[0]}: torchvision {len(theirs['scores'])} "
                f"detections ({len(rows)} >= 0.3), segzoo {count}")
        if rows:
            line += "; " + ", ".join(f"{k} {v:.4g}" for k, v in figures(arch, rows).items())
        if "heatmaps" in theirs:
            decoding.append(decoding_check(theirs))
            line += ("; heatmap decoding of torchvision's heatmaps: {} keypoints, max xy diff {:.3g} px, "
                     "max score diff {:.3g}").format(*decoding[-1])
        print(line, flush=True)
    return all_rows, decoding


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
        rows, decoding = segzoo_side(arch, work, list(info["images"]), args.reuse)
        if not rows:
            print(f"{arch}: no torchvision detection >= 0.3 to compare; FAILED (weights not alive)")
            failed = True
            continue
        worst = figures(arch, rows)
        tie = False
        ok = worst["min box IoU"] >= 0.95 and worst["max |score diff|"] <= 5e-3
        if arch.startswith("mask"):
            ok &= worst["min mask IoU"] >= 0.95
        else:
            # A keypoint > 1 px away is accepted only on a near-tie: segzoo's cell is a peak of
            # torchvision's own resized heatmap within the heatmap-logit noise between the two
            # implementations (the run's max keypoint score diff) of its maximum. Random weights
            # give flat multi-peak heatmaps; trained ones one clear peak per keypoint.
            strict = worst["max keypoint distance px"] <= 1.0
            tie = not strict and worst["their max peak gap"] <= worst["max keypoint score diff"]
            ok &= strict or tie
            if tie:
                print(f"{arch}: {worst['keypoints > 1 px']} of {17 * len(rows)} keypoints are > 1 px away, "
                      f"each on a near-tie: torchvision's own resized heatmap is at most "
                      f"{worst['their max peak gap']:.3g} below its maximum there (heatmap logit noise "
                      f"between the implementations: up to {worst['max keypoint score diff']:.3g})")
            # decoding the same heatmaps: the same cells (xy to float32 rounding), the same scores
            ok &= max(d[1] for d in decoding) <= 1e-3 and max(d[2] for d in decoding) <= 1e-3
            worst["decoding max xy diff px"] = max(d[1] for d in decoding)
            worst["decoding max score diff"] = max(d[2] for d in decoding)
        summary = ", ".join(f"{k} {v:.4g}" for k, v in worst.items())
        print(f"{arch}: {len(rows)} torchvision detections >= 0.3 on {len(info['images'])} photos "
              f"({', '.join(str(n) for n in info['images'].values())} detections in all); "
              f"{summary}: {('PASSED (near-tie keypoints, above)' if tie else 'PASSED') if ok else 'FAILED'}",
              flush=True)
        failed |= not ok
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
