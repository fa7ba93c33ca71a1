"""Mask Scoring R-CNN (Huang et al. 2019): the MaskIoU head, its targets, loss and mask scores.

Mask R-CNN scores a mask with its box's classification score, which says
nothing about the mask's quality. MS R-CNN adds a head that regresses the IoU
between the predicted mask and its ground truth, and scores each mask as
`class score * predicted MaskIoU` at inference.

- `MaskIoUHead`: the predicted 28 x 28 mask (probabilities of the class) is
  max-pooled 2x2/2 to 14 x 14 and concatenated with the 14 x 14 RoI features
  (the mask branch's RoIAlign output, `[R, 14, 14, 256]`); 4 conv3x3 256 +
  ReLU (the last with stride 2 -> 7 x 7), flatten, FC 1024 + ReLU, FC 1024 +
  ReLU (`maskiou_fcn1..4`, `maskiou_fc1..2` of the reference code).
- `MaskIoUPredictor`: FC to one IoU per class (`maskiou`), `[R, K + 1]`
  indexed by class id like `MaskPredictor` (column 0 = background, unused),
  or `[R, 1]` class-agnostic. Class-dependent: skipped when fine-tuning.
- `maskiou_targets`, `maskiou_loss`, `mask_scores`: below.

Convolutions follow the reference exactly, including torch's symmetric
padding 1 of the stride-2 conv (explicit zero padding + "valid", not TF's
asymmetric "same"). Init as the reference: convs He normal fan-out, FCs
kaiming_uniform(a=1) (uniform +-sqrt(3 / fan_in)), predictor normal(0, 0.01),
biases 0. The flatten is NHWC (H, W, C order): a torch importer permutes
`maskiou_fc1`'s input rows from (C, H, W).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from segzoo.models.initializers import he_fan_out


def _kaiming_uniform_a1():
    """torch.nn.init.kaiming_uniform_(a=1): uniform in +-sqrt(3 / fan_in)."""
    return keras.initializers.VarianceScaling(scale=1.0, mode="fan_in", distribution="uniform")


@keras.saving.register_keras_serializable(package="segzoo")
class MaskIoUHead(keras.layers.Layer):
    """(features `[R, S, S, C]`, masks `[R, 2S, 2S]` or `[R, 2S, 2S, 1]`) -> `[R, representation_size]`.

    Args:
        layers: widths of the 3x3 convs; the last one has stride 2 (4 x 256
            in the paper; smaller for tests).
        representation_size: width of the two FC layers (1024).
    Call args:
        features: RoI features, float `[R, S, S, C]` (S = 14).
        masks: predicted mask probabilities of the RoI's class, float
            `[R, 2S, 2S]` (or with a trailing channel of 1), in [0, 1].
    """

    def __init__(self, layers=(256,) * 4, representation_size=1024, **kwargs):
        super().__init__(**kwargs)
        self.layers_widths = tuple(int(w) for w in layers)
        self.representation_size = int(representation_size)
        if not self.layers_widths or min(self.layers_widths) < 1:
            raise ValueError(f"layers must be a non-empty list of positive widths, got {layers!r}")
        if self.representation_size < 1:
            raise ValueError(f"representation_size must be >= 1, got {representation_size}")
        self.mask_pool = keras.layers.MaxPooling2D(2, strides=2, dtype=self.dtype_policy, name="mask_pool")
        last = len(self.layers_widths) - 1
        self.convs = [
            keras.layers.Conv2D(width, 3, strides=2 if i == last else 1, padding="valid" if i == last else "same",
                                activation="relu", kernel_initializer=he_fan_out(), dtype=self.dtype_policy,
                                name=f"maskiou_fcn{i + 1}")
            for i, width in enumerate(self.layers_widths)
        ]
        self.pad = keras.layers.ZeroPadding2D(1, dtype=self.dtype_policy, name="maskiou_pad")
        self.flatten = keras.layers.Flatten(dtype=self.dtype_policy)
        self.fc1 = keras.layers.Dense(self.representation_size, activation="relu",
                                      kernel_initializer=_kaiming_uniform_a1(), dtype=self.dtype_policy,
                                      name="maskiou_fc1")
        self.fc2 = keras.layers.Dense(self.representation_size, activation="relu",
                                      kernel_initializer=_kaiming_uniform_a1(), dtype=self.dtype_policy,
                                      name="maskiou_fc2")

    def build(self, features_shape, masks_shape=None):
        features_shape = tuple(features_shape)
        size = features_shape[1]
        if size is None or features_shape[2] != size:
            raise ValueError(f"MaskIoUHead needs square features with a static size, got {features_shape}")
        if masks_shape is not None and tuple(masks_shape)[1] not in (None, 2 * size):
            raise ValueError(f"masks must be twice the feature size ({2 * size}), got {tuple(masks_shape)}")
        shape = features_shape[:-1] + (features_shape[-1] + 1,)
        for i, conv in enumerate(self.convs):
            if i == len(self.convs) - 1:
                shape = (shape[0], shape[1] + 2, shape[2] + 2, shape[3])
            conv.build(shape)
            shape = tuple(conv.compute_output_shape(shape))
        flat = shape[1] * shape[2] * shape[3]
        self.fc1.build((None, flat))
        self.fc2.build((None, self.representation_size))
        self.built = True

    def call(self, features, masks):
        masks = tf.cast(masks, self.compute_dtype)
        if len(masks.shape) == 3:
            masks = masks[..., None]
        x = tf.concat([features, self.mask_pool(masks)], axis=-1)
        for i, conv in enumerate(self.convs):
            if i == len(self.convs) - 1:
                x = self.pad(x)
            x = conv(x)
        return self.fc2(self.fc1(self.flatten(x)))

    def compute_output_shape(self, features_shape, masks_shape=None):
        return (features_shape[0], self.representation_size)

    def get_config(self):
        config = super().get_config()
        config.update({"layers": list(self.layers_widths), "representation_size": self.representation_size})
        return config


@keras.saving.register_keras_serializable(package="segzoo")
class MaskIoUPredictor(keras.layers.Layer):
    """`[R, D]` -> float32 predicted MaskIoU `[R, K + 1]` (or `[R, 1]` class-agnostic).

    Args:
        num_classes: K foreground classes (column = class id, 0 unused).
        class_agnostic: one IoU for every class.
    """

    def __init__(self, num_classes, class_agnostic=False, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.class_agnostic = bool(class_agnostic)
        if self.num_classes < 1:
            raise ValueError(f"num_classes (foreground classes K) must be >= 1, got {num_classes}")
        self.maskiou = keras.layers.Dense(
            1 if self.class_agnostic else self.num_classes + 1,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01), dtype="float32",
            name="maskiou")  # float32 under a mixed policy

    def build(self, input_shape):
        self.maskiou.build(tuple(input_shape))
        self.built = True

    def call(self, features):
        return tf.cast(self.maskiou(features), tf.float32)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1 if self.class_agnostic else self.num_classes + 1)

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "class_agnostic": self.class_agnostic})
        return config


def maskiou_targets(mask_probs, mask_targets, rois=None, gt_areas=None, threshold=0.5):
    """IoU between the binarised predicted mask and its ground truth, on the S x S RoI grid.

    Prediction: `mask_probs > threshold`; ground truth: `mask_targets >= 0.5`
    (the soft RoIAligned target binarised). Without `rois` / `gt_areas` this is
    the plain IoU of the two S x S masks (the part of the object inside the RoI).

    With `rois` and `gt_areas` it is MS R-CNN's target: the union counts the
    whole ground-truth object, also the part outside the RoI, so a mask that
    covers only the in-box part of a larger object is not scored perfect.
    The reference estimates that area as sum(target) / (GT area in box / GT
    area); here the full GT pixel area is put on the grid's scale directly,
    `gt_area * S^2 / roi_area`, and never below the in-grid target area:
        IoU = |P & T| / max(|P| + max(|T|, gt_area * S^2 / roi_area) - |P & T|, 1).
    The reference code thresholds the mask *logits* at 0.5 (probability
    0.62); this thresholds probabilities at `threshold` (0.5 = logit 0).

    Args:
        mask_probs: float `[..., S, S]` predicted probabilities of the RoI's class.
        mask_targets: float `[..., S, S]` in [0, 1] (e.g. `targets.roi_align_masks`).
        rois: float32 `[..., 4]` xyxy input pixels of the RoIs (optional).
        gt_areas: float `[...]` pixel area of each RoI's matched GT mask (optional).
        threshold: binarisation threshold of the prediction.
    Returns:
        float32 `[...]` in [0, 1], gradient-stopped; 0 for an empty prediction
        and target.
    """
    predicted = tf.cast(tf.cast(mask_probs, tf.float32) > threshold, tf.float32)
    target = tf.cast(tf.cast(mask_targets, tf.float32) >= 0.5, tf.float32)
    overlap = tf.reduce_sum(predicted * target, axis=[-2, -1])
    predicted_area = tf.reduce_sum(predicted, axis=[-2, -1])
    target_area = tf.reduce_sum(target, axis=[-2, -1])
    if (rois is None) != (gt_areas is None):
        raise ValueError("maskiou_targets needs both rois and gt_areas (MS R-CNN's full-object union) or neither")
    if rois is not None:
        rois = tf.cast(rois, tf.float32)
        cells = float(mask_targets.shape[-1] * mask_targets.shape[-2])
        roi_area = tf.maximum((rois[..., 2] - rois[..., 0]) * (rois[..., 3] - rois[..., 1]), 1e-6)
        full = tf.cast(gt_areas, tf.float32) * cells / roi_area
        target_area = tf.maximum(target_area, full)
    union = tf.maximum(predicted_area + target_area - overlap, 1.0)
    return tf.stop_gradient(overlap / union)


def _select(predictions, classes):
    """Column of each RoI's class: `[..., C]`, int `[...]` -> `[...]` (column 0 when C == 1)."""
    predictions = tf.cast(predictions, tf.float32)
    classes = tf.cast(classes, tf.int32)
    if predictions.shape[-1] == 1:
        return predictions[..., 0]
    return tf.gather(predictions, classes, batch_dims=len(classes.shape))


def maskiou_loss(predictions, labels, targets, positive):
    """MS R-CNN's L2 loss: `0.5 * (pred - target)^2` averaged over positive RoIs with target > 0.

    As the reference `l2_loss`, RoIs whose target IoU is 0 do not count.

    Args:
        predictions: float `[..., K + 1]` (or `[..., 1]`) `MaskIoUPredictor` output.
        labels: int32 `[...]` GT class of each RoI (column read).
        targets: float32 `[...]` `maskiou_targets`.
        positive: bool `[...]` positive RoIs.
    Returns:
        float32 scalar; 0 (not NaN) when nothing counts.
    """
    targets = tf.cast(targets, tf.float32)
    counted = tf.logical_and(tf.cast(positive, tf.bool), targets > 0.0)
    error = 0.5 * tf.square(_select(predictions, labels) - targets)
    count = tf.maximum(tf.reduce_sum(tf.cast(counted, tf.float32)), 1.0)
    return tf.reduce_sum(tf.where(counted, error, 0.0)) / count


def mask_scores(box_scores, maskiou_predictions, classes):
    """MS R-CNN's mask score: class score * predicted MaskIoU of the detected class.

    Args:
        box_scores: float32 `[...]` detection (classification) scores.
        maskiou_predictions: float `[..., K + 1]` (or `[..., 1]`).
        classes: int32 `[...]` detected classes (1..K).
    Returns:
        float32 `[...]`, not clipped (as the reference).
    """
    return tf.cast(box_scores, tf.float32) * _select(maskiou_predictions, classes)
