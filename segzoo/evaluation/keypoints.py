"""Keypoint evaluation constants: OKS sigmas, and keypoints in COCO's JSON form.

COCO keypoint AP matches detections to ground truth by object keypoint
similarity, OKS = mean over the labelled keypoints i of
exp(-d_i^2 / (2 s^2 (2 sigma_i)^2)), d_i the distance between predicted and
true keypoint, s^2 the object's area (segment area, pixels^2) and sigma_i
the per-keypoint spread COCO measured from re-annotations (small for eyes,
large for hips). pycocotools' `COCOeval(..., "keypoints")` computes it.

Sigmas: the 17 COCO person keypoints use COCO's own sigmas (pycocotools'
`kpt_oks_sigmas`). Any other K uses `DEFAULT_KEYPOINT_SIGMA` for every
keypoint, the mean of COCO's 17 (0.0669: a typical body joint; with it a
keypoint 0.13 x sqrt(area) away has similarity exp(-1/2) = 0.61). Pass
`keypoint_sigmas=` to `InstanceEvaluator` for values measured on your data.
"""

from __future__ import annotations

import numpy as np

# pycocotools.cocoeval.Params.setKpParams, in COCO's keypoint order.
COCO_PERSON_SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87,
     0.89, 0.89]) / 10.0  # fmt: skip
DEFAULT_KEYPOINT_SIGMA = float(COCO_PERSON_SIGMAS.mean())


def keypoint_sigmas(num_keypoints: int, sigmas=None) -> np.ndarray:
    """float64 [K] OKS sigmas: `sigmas` if given, COCO's for K = 17, else the default (module doc).

    Raises:
        ValueError: `sigmas` has another length than K or a value <= 0.
    """
    num_keypoints = int(num_keypoints)
    if sigmas is not None:
        sigmas = np.asarray(sigmas, np.float64).reshape(-1)
        if len(sigmas) != num_keypoints or not np.all(sigmas > 0):
            raise ValueError(
                f"keypoint_sigmas: expected {num_keypoints} positive values (one per keypoint), "
                f"got {sigmas.tolist()}"
            )
        return sigmas
    if num_keypoints == len(COCO_PERSON_SIGMAS):
        return COCO_PERSON_SIGMAS.copy()
    return np.full(num_keypoints, DEFAULT_KEYPOINT_SIGMA)


def coco_keypoints(points) -> list[float]:
    """[K, 3] (x, y, v or score) -> COCO's flat [x1, y1, v1, x2, ...] list of floats."""
    return [float(v) for v in np.asarray(points, np.float64).reshape(-1)]
