"""Pictures for people: the VOC palette, semantic and instance overlays (OpenCV).

All functions take and return numpy arrays: images uint8 RGB [H, W, 3].
"""

from __future__ import annotations

import cv2
import numpy as np


def voc_palette(num_colors: int = 256) -> np.ndarray:
    """The Pascal VOC colour map, uint8 [num_colors, 3] RGB (index 255 is (224, 224, 192)).

    Colour i spreads the bits of i over the high bits of R, G, B, as the VOC
    devkit's `labelcolormap.m` does.
    """
    palette = np.zeros((num_colors, 3), dtype=np.uint8)
    for index in range(num_colors):
        value, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette[index] = (r, g, b)
    return palette


_PALETTE = voc_palette()


def colorize(labels: np.ndarray) -> np.ndarray:
    """Class ids [H, W] (0..255) -> VOC colours uint8 [H, W, 3]."""
    labels = np.asarray(labels)
    return _PALETTE[np.clip(labels, 0, 255).astype(np.uint8)]


def semantic_overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blends the VOC colours of `labels` [H, W] over `image` uint8 [H, W, 3].

    Background (0) stays the image; 255 (ignore) is drawn in the VOC void colour.
    """
    image = np.asarray(image, dtype=np.uint8)
    labels = np.asarray(labels)
    if labels.shape != image.shape[:2]:
        raise ValueError(f"labels shape {labels.shape} does not match image shape {image.shape[:2]}")
    colors = colorize(labels)
    blended = cv2.addWeighted(image, 1.0 - alpha, colors, alpha, 0.0)
    return np.where((labels == 0)[..., None], image, blended).astype(np.uint8)


def draw_keypoints(image: np.ndarray, keypoints, skeleton=(), colors=None,
                   threshold: float = 0.0) -> np.ndarray:
    """Draws keypoints (filled dots) and the skeleton's lines between them on a copy of `image`.

    Args:
        image: uint8 [H, W, 3] RGB.
        keypoints: float [N, K, 3] (x, y, s) in image pixels; s is a score
            (predictions) or COCO's visibility v (ground truth): a keypoint is
            drawn where s > `threshold` (v = 0, unlabelled, is never drawn).
        skeleton: pairs (i, j) of 0-based keypoint indices; a line is drawn
            where both ends are drawn.
        colors: uint8 [N, 3] one colour per instance (default: VOC palette 1..N).
    """
    out = np.asarray(image, dtype=np.uint8).copy()
    keypoints = np.asarray(keypoints, np.float32).reshape(-1, *np.shape(keypoints)[-2:])
    if keypoints.size == 0:
        return out
    colors = voc_palette(len(keypoints) + 1)[1:] if colors is None else np.asarray(colors)
    radius = max(1, int(round(min(out.shape[:2]) / 128)))
    for n, points in enumerate(keypoints):
        color = tuple(int(c) for c in colors[n])
        shown = points[:, 2] > threshold
        xy = [(int(round(float(x))), int(round(float(y)))) for x, y in points[:, :2]]
        for i, j in skeleton:
            if shown[i] and shown[j]:
                cv2.line(out, xy[i], xy[j], color, 1, cv2.LINE_AA)
        for k in np.flatnonzero(shown):
            cv2.circle(out, xy[k], radius + 1, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(out, xy[k], radius, color, -1, cv2.LINE_AA)
    return out


def instance_overlay(image: np.ndarray, boxes, masks, classes, scores=None, class_names=None,
                     alpha: float = 0.5, keypoints=None, skeleton=()) -> np.ndarray:
    """Draws instance masks, boxes and "name score" labels (and keypoints) over `image`.

    Args:
        image: uint8 [H, W, 3] RGB.
        boxes: float [N, 4] `[x1, y1, x2, y2]` in image pixels.
        masks: {0,1} [N, H, W], or N crops (y0, x0, bool [h, w]) placed at (y0, x0)
            (`segzoo.inference.instances.Instances.crops`), or None.
        classes: int [N], ids into `class_names` (names[i] for class i).
        scores: optional float [N].
        class_names: optional list of names indexed by class id.
        keypoints: optional float [N, K, 3] (x, y, score), drawn with `skeleton`
            by `draw_keypoints` in each instance's colour.

    Lines and labels grow with the image (1 px and OpenCV font scale 0.35 up to
    a 400-pixel short side, in proportion above), so they stay legible when a
    4000 x 3000 overlay is viewed scaled to a screen.
    """
    out = np.asarray(image, dtype=np.uint8).copy()
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    classes = np.asarray(classes).reshape(-1)
    colors = voc_palette(len(boxes) + 1)[1:]
    if masks is not None:
        crops = masks if isinstance(masks, list | tuple) else [(0, 0, m) for m in np.asarray(masks)]
        for i, (y0, x0, mask) in enumerate(crops):
            view = out[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]]
            region = mask.astype(bool)
            view[region] = ((1 - alpha) * view[region] + alpha * colors[i]).astype(np.uint8)
    height, width = out.shape[:2]
    grow = max(1.0, min(height, width) / 400.0)
    font_scale, thickness = 0.35 * grow, max(1, int(round(grow)))
    corners = []
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        p1 = (int(round(float(np.clip(x1, 0, width - 1)))), int(round(float(np.clip(y1, 0, height - 1)))))
        p2 = (int(round(float(np.clip(x2, 0, width - 1)))), int(round(float(np.clip(y2, 0, height - 1)))))
        cv2.rectangle(out, p1, p2, tuple(int(c) for c in colors[i]), thickness)
        corners.append(p1)
    # Labels after every box, the first detection's (the best, when sorted by score) last, on top.
    for i in reversed(range(len(boxes))):
        color, p1 = tuple(int(c) for c in colors[i]), corners[i]
        cid = int(classes[i])
        name = class_names[cid] if class_names is not None and 0 <= cid < len(class_names) else str(cid)
        text = name if scores is None else f"{name} {float(scores[i]):.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        pad = 2 * thickness
        ty = max(p1[1], th + pad)
        tx = max(0, min(p1[0], width - tw - pad))  # keep the label inside the image when it fits
        cv2.rectangle(out, (tx, ty - th - pad), (tx + tw + pad, ty), color, -1)
        cv2.putText(out, text, (tx + thickness, ty - thickness), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    (255, 255, 255), thickness, cv2.LINE_AA)
    if keypoints is not None:
        out = draw_keypoints(out, keypoints, skeleton, colors=colors)
    return out
