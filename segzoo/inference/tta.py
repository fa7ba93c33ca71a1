"""Test-time augmentation for semantic models: flips and scales, probabilities averaged.

    config = parse_tta("flip,scales=0.75,1,1.25")    # `--tta` on predict / eval
    fn = with_tta(probability_fn(model), config)     # images -> probabilities, augmented
    probabilities = fn(images)                       # float32 [B, H, W, K]

For each scale s, the batch is resized to (round(H s), round(W s)) (bilinear,
half-pixel centres, as `cv2.resize(INTER_LINEAR)`), segmented, and its softmax
probabilities resized back to (H, W); with `flip` the horizontally mirrored
batch is segmented too and its probabilities mirrored back. The result is the
mean over all len(scales) * (2 if flip else 1) passes, at the original
resolution (mmsegmentation's `--tta` averages the same way). Scale 1 is never
resized, so `scales=1` without flip is exactly the plain prediction.

With `--tile`, augmentation is applied to each tile (the tile is the image the
model sees); blending then averages the augmented tile probabilities.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from segzoo.errors import ArgumentError, arg


@dataclasses.dataclass(frozen=True)
class TTAConfig:
    """Which passes test-time augmentation averages.

    Attributes:
        flip: also segment the horizontally flipped image.
        scales: resize factors (1.0 = original size), each > 0.
    """

    flip: bool = False
    scales: tuple = (1.0,)

    @property
    def num_passes(self) -> int:
        return len(self.scales) * (2 if self.flip else 1)


def parse_tta(text: str | None) -> TTAConfig | None:
    """`--tta` text -> `TTAConfig`; None / "" / "none" -> None.

    Accepted: "flip", "scales=0.75,1,1.25", "flip,scales=0.75,1,1.25".

    Raises:
        ValueError: anything else (unknown word, scale not a positive number).
    """
    if text is None or text.strip().lower() in ("", "none"):
        return None
    expected = "expected flip, scales=S1,S2,... or flip,scales=S1,S2,... (e.g. flip,scales=0.75,1,1.25)"
    flip, scales, in_scales = False, [], False
    for token in (t.strip() for t in text.split(",")):
        if token.lower() == "flip":
            flip, in_scales = True, False
            continue
        if token.lower().startswith("scales="):
            in_scales, token = True, token.split("=", 1)[1]
        if not in_scales:
            raise ArgumentError(f"{arg('tta', text)}: unknown item {token!r}; {expected}")
        try:
            scale = float(token)
        except ValueError:
            raise ArgumentError(f"{arg('tta', text)}: scale {token!r} is not a number; {expected}") from None
        if not np.isfinite(scale) or scale <= 0:
            raise ArgumentError(f"{arg('tta', text)}: scale {token!r} must be a positive number; {expected}")
        scales.append(scale)
    if not flip and not scales:
        raise ArgumentError(f"{arg('tta', text)}: nothing to do; {expected}")
    return TTAConfig(flip=flip, scales=tuple(scales) if scales else (1.0,))


def probability_fn(model):
    """`fn(images float32/uint8 [B, H, W, 3] in 0..255) -> softmax float32 numpy [B, H, W, K]`:
    `segzoo.inference.predict_probabilities` (the model's serving call, traced once)."""
    from segzoo.inference.predictor import predict_probabilities

    def fn(images):
        return predict_probabilities(model, np.asarray(images, np.float32)).numpy()

    return fn


def _resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    if array.shape[1:3] == (height, width):
        return array
    return tf.image.resize(array, (height, width), method="bilinear").numpy()


def tta_probabilities(fn, images, config: TTAConfig) -> np.ndarray:
    """Mean probabilities float32 [B, H, W, K] of `fn` over the passes of `config`.

    Args:
        fn: `fn(images float32 [B, h, w, 3]) -> probabilities float32 [B, h, w, K]`.
        images: [B, H, W, 3] pixels in 0..255 (any real dtype).
        config: a `TTAConfig`.
    """
    images = np.asarray(images, np.float32)
    height, width = images.shape[1:3]
    total = None
    for scale in config.scales:
        size = (max(1, int(round(height * scale))), max(1, int(round(width * scale))))
        scaled = _resize(images, *size)
        passes = [fn(scaled)]
        if config.flip:
            passes.append(fn(scaled[:, :, ::-1])[:, :, ::-1])
        for probabilities in passes:
            probabilities = _resize(np.asarray(probabilities, np.float32), height, width)
            total = probabilities.copy() if total is None else total + probabilities
    return total / np.float32(config.num_passes)


def with_tta(fn, config: TTAConfig | None):
    """`fn` itself when `config` is None, else `images -> tta_probabilities(fn, images, config)`."""
    if config is None:
        return fn
    return lambda images: tta_probabilities(fn, images, config)
