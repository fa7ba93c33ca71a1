"""bfloat16 (or float16) against float32 for one checkpoint, on a dataset split, in one run.

    python benchmarks/precision_agreement.py --checkpoint runs/unet/model.keras
    python benchmarks/precision_agreement.py --checkpoint runs/mask_rcnn/model.keras \
        --data shapes --split val --precision bfloat16 --max-images 32

Loads the checkpoint twice, its layers built under the Keras `float32` and the
`mixed_bfloat16` (`--precision`) policy, runs both on every image of the split
and prints one JSON object:
- semantic: `pixel_agreement` (fraction of pixels whose label is equal; goal
  >= 0.99), `foreground_agreement` (the same over the pixels either precision
  labels non-background, so a model that says "background" almost everywhere
  cannot pass on the background alone) and the mIoU of each precision against
  the ground truth;
- instance: `detections_matched` (same class, box IoU >= 0.9, detections
  scoring >= `--score-threshold`; goal >= 0.98), and each precision's count;
  and `detections_matched_margin`, the same rule away from the threshold: a
  detection scoring >= threshold + `--margin` in either precision must be
  matched by one scoring >= threshold - margin in the other (so a score that
  sits on the threshold and crosses it by a bfloat16 rounding is not counted
  as a disagreement, but a confident detection that disappears is), and
  `confident_mismatches`: why the unmatched confident ones fail ("class": covered
  at the IoU by another class; "iou": same class, box IoU in [0.5, 0.9); "gone").
`--input-noise G` measures the rule's floor instead: float32 against float32 on
the same images plus seeded uniform integer noise in [-G, G] grey levels (an
invisible change, like a JPEG re-encode), so a model whose boxes move by a
pixel under any perturbation shows it.
Prints the machine (CPU, ISA) first: on AVX2-only CPUs bfloat16 is emulated,
so the figures are the numbers' agreement, not a speed claim.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import describe_machine  # noqa: E402


def _images(args, task):
    import segzoo.data

    load_kwargs = {"task": task} if args.data == "shapes" else {}
    ds = segzoo.data.load(args.data, args.split, data_dir=args.data_dir, **load_kwargs)
    info = segzoo.data.get_info(args.data, data_dir=args.data_dir, **load_kwargs)
    for i, element in enumerate(ds.as_numpy_iterator()):
        if args.max_images is not None and i >= args.max_images:
            break
        yield info, element


def semantic_agreement(reference, other, elements) -> dict:
    from segzoo.evaluation.agreement import label_agreement
    from segzoo.evaluation.semantic import ConfusionMatrix
    from segzoo.inference import predict_labels

    agree, pixels, matrices = 0.0, 0, None
    fg_agree, fg_pixels = 0, 0
    for info, element in elements:
        if matrices is None:
            matrices = [ConfusionMatrix(info.num_classes) for _ in range(2)]
        a = predict_labels(reference, element["image"])
        b = predict_labels(other, element["image"])
        agree += label_agreement(a, b) * a.size
        pixels += a.size
        foreground = (np.asarray(a) != 0) | (np.asarray(b) != 0)
        fg_agree += int((np.asarray(a) == np.asarray(b))[foreground].sum())
        fg_pixels += int(foreground.sum())
        matrices[0].update(element["mask"], a)
        matrices[1].update(element["mask"], b)
    if matrices is None:
        raise ValueError("the split has no images")
    return {"pixel_agreement": agree / pixels, "pixels": pixels,
            "foreground_agreement": fg_agree / fg_pixels if fg_pixels else None,
            "foreground_pixels": fg_pixels,
            "mean_iou_float32": matrices[0].metrics()["mean_iou"],
            "mean_iou_other": matrices[1].metrics()["mean_iou"]}


def _detections(model, image):
    """All of one image's detections (numpy, cut at num_detections)."""
    out = model(image[None].astype(np.float32), training=False)
    n = int(np.asarray(out["num_detections"])[0])
    return {"boxes": np.asarray(out["boxes"])[0][:n], "scores": np.asarray(out["scores"])[0][:n],
            "classes": np.asarray(out["classes"])[0][:n]}


def _above(detections, threshold):
    keep = detections["scores"] >= threshold
    return {k: v[keep] for k, v in detections.items()}


def confident_matches(a, b, score_threshold, margin, iou_threshold):
    """(matched, total): detections of `a` scoring >= threshold + margin matched (same class,
    IoU >= iou_threshold, one to one) by detections of `b` scoring >= threshold - margin."""
    from segzoo.evaluation.agreement import match_detections

    confident = _above(a, score_threshold + margin)
    result = match_detections(confident, _above(b, score_threshold - margin),
                              iou_threshold=iou_threshold)
    return result["matched"], result["reference"]


def mismatch_reasons(a, b, score_threshold, margin, iou_threshold) -> dict:
    """Why each confident detection of `a` (score >= threshold + margin) has no counterpart in
    `b` at the plain rule's IoU: counts of
    - "class": a `b` detection (score >= threshold - margin) covers it at IoU >= iou_threshold
      but with another class;
    - "iou": its best same-class `b` box has IoU in [0.5, iou_threshold) (the box moved);
    - "gone": no same-class `b` box at IoU >= 0.5 (the detection vanished or fell under
      threshold - margin).
    Greedy one-to-one as `match_detections`; matched detections are not counted."""
    from segzoo.evaluation.agreement import box_iou

    confident, candidates = _above(a, score_threshold + margin), _above(b, score_threshold - margin)
    reasons = {"class": 0, "iou": 0, "gone": 0}
    iou = box_iou(np.asarray(confident["boxes"]).reshape(-1, 4),
                  np.asarray(candidates["boxes"]).reshape(-1, 4))
    same = np.asarray(confident["classes"])[:, None] == np.asarray(candidates["classes"])[None, :]
    taken = np.zeros(iou.shape[1], bool)
    for i in np.argsort(-np.asarray(confident["scores"]), kind="stable"):
        same_iou = np.where(same[i] & ~taken, iou[i], -1.0)
        if same_iou.size and same_iou.max() >= iou_threshold:
            taken[int(np.argmax(same_iou))] = True
        elif iou.shape[1] and np.where(~same[i], iou[i], -1.0).max() >= iou_threshold:
            reasons["class"] += 1
        elif same_iou.size and same_iou.max() >= 0.5:
            reasons["iou"] += 1
        else:
            reasons["gone"] += 1
    return reasons


def with_noise(grey_levels, seed=0):
    """image uint8 [H, W, C] -> the image plus uniform integer noise in [-G, G], clipped (seeded)."""
    rng = np.random.default_rng(seed)

    def perturb(image):
        noise = rng.integers(-grey_levels, grey_levels + 1, size=image.shape)
        return np.clip(image.astype(np.int16) + noise, 0, 255).astype(image.dtype)

    return perturb


def instance_agreement(reference, other, elements, score_threshold=0.5, iou_threshold=0.9,
                       margin=0.05, perturb=None):
    """`perturb`: None, or image -> image applied to `other`'s input (the `--input-noise` floor)."""
    from segzoo.evaluation.agreement import match_detections, summarise_matches

    matches, confident, scores_diff = [], [0, 0], []
    reasons = {"class": 0, "iou": 0, "gone": 0}
    for _, element in elements:
        image = element["image"]
        a = _detections(reference, image)
        b = _detections(other, perturb(image) if perturb else image)
        matches.append(match_detections(_above(a, score_threshold), _above(b, score_threshold),
                                        iou_threshold=iou_threshold))
        for x, y in ((a, b), (b, a)):
            matched, total = confident_matches(x, y, score_threshold, margin, iou_threshold)
            confident[0] += matched
            confident[1] += total
            for key, count in mismatch_reasons(x, y, score_threshold, margin, iou_threshold).items():
                reasons[key] += count
        near = np.abs(a["scores"] - score_threshold) < margin
        scores_diff.append(int(near.sum()))
    if not matches:
        raise ValueError("the split has no images")
    summary = summarise_matches(matches)
    return {"detections_matched": summary["fraction"], "matched": summary["matched"],
            "detections_float32": summary["reference"], "detections_other": summary["other"],
            "detections_matched_margin": 1.0 if confident[1] == 0 else confident[0] / confident[1],
            "confident_matched": confident[0], "confident_detections": confident[1],
            "confident_mismatches": reasons,
            "float32_detections_within_margin": sum(scores_diff),
            "images": len(matches), "score_threshold": score_threshold, "margin": margin,
            "iou_threshold": iou_threshold}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", default="shapes")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--split", default="val")
    parser.add_argument("--precision", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--score-threshold", type=float, default=0.5)
    parser.add_argument("--margin", type=float, default=0.05,
                        help="score margin of detections_matched_margin (module doc)")
    parser.add_argument("--input-noise", type=int, default=None, metavar="G",
                        help="instance models: float32 against float32 on the images plus "
                             "+-G grey levels of noise (the match rule's floor; module doc)")
    args = parser.parse_args(argv)
    print(describe_machine(), flush=True)

    from segzoo.training.precision import load_checkpoint_at

    reference = load_checkpoint_at(args.checkpoint, "float32")
    task = "instance" if reference.task == "instance" else "semantic"
    if args.input_noise is not None and task != "instance":
        parser.error("--input-noise applies to instance models")
    precision = "float32" if args.input_noise is not None else args.precision
    other = reference if args.input_noise is not None else load_checkpoint_at(args.checkpoint,
                                                                               precision)
    start = time.perf_counter()
    if task == "semantic":
        result = semantic_agreement(reference, other, _images(args, task))
    else:
        result = instance_agreement(
            reference, other, _images(args, task), score_threshold=args.score_threshold,
            margin=args.margin,
            perturb=None if args.input_noise is None else with_noise(args.input_noise))
    result.update({"checkpoint": args.checkpoint, "model": type(reference).__name__,
                   "precision": precision, "input_noise": args.input_noise, "data": f"{args.data}:{args.split}",
                   "seconds": round(time.perf_counter() - start, 1)})
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
