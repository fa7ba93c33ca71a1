"""RoI heads (torchvision's `RoIHeads`): the box branch and the optional mask, keypoint and MaskIoU branches.

Every branch reads the FPN pyramid dict through its own `MultiLevelRoIPooler`
(levels by name, P2..P5):

- box: RoIAlign 7 x 7 -> `TwoMLPHead` -> `BoxPredictor`; training samples 512
  RoIs (25% positive at IoU 0.5) from the proposals + GT boxes; inference
  decodes, per-class NMS, `detections_per_image` slots (`postprocess.detect`).
- mask (Mask R-CNN): RoIAlign 14 x 14 -> `MaskHead` -> `MaskPredictor`, 28 x 28
  per class; per-pixel BCE on the GT class of positive RoIs ("sigmoid") or the
  seed's softmax ablation.
- keypoint (Keypoint R-CNN): RoIAlign 14 x 14 -> `KeypointHead` (8 conv3x3
  512) -> `KeypointPredictor` (deconv 4x4/2 + bilinear 2x) -> 56 x 56 logits
  per keypoint; targets from the positive RoI box (`keypoints_to_heatmap`),
  softmax CE over the 56 x 56 cells of each labelled keypoint inside the RoI;
  decoded with torch's bicubic upsampling (`heatmaps_to_keypoints`).
- MaskIoU (MS R-CNN, needs the mask branch): the mask branch's 14 x 14 RoI
  features + the max-pooled predicted mask of the class (gradient stopped) ->
  `MaskIoUHead` -> `MaskIoUPredictor`; IoU targets against the full GT mask
  area, L2 loss on positives; at inference mask score = box score x MaskIoU.

The mask / keypoint / MaskIoU branches run on the leading slots that hold a
positive RoI (training) or a detection (inference) in some image of the batch;
under XLA on all of them (static shapes). The keypoint decoding resizes each
heatmap to its box size, which XLA cannot compile: keypoint models do not
support `jit_compile`.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import control_flow_util

from segzoo.models.mask_rcnn import (
    box_ops,
    keypoint_ops,
    losses,
    maskiou_head,
    postprocess,
    targets,
)
from segzoo.models.mask_rcnn.box_coder import BoxCoder

MASK_LOSSES = ("sigmoid", "softmax")


def _in_xla_context():
    """True while tracing for XLA (`jit_compile=True`), where shapes must stay static."""
    return control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph())


def used_slots(flags):
    """Leading slots worth computing for `[B, S]` flags packed to the front.

    S (static) under XLA; otherwise the largest count of set flags over the
    batch (at least 1): the slots after it are empty in every image, so the
    heads skip them (exactly the same losses / outputs, less work).
    """
    total = flags.shape[1]
    if _in_xla_context() and total is not None:
        return total
    count = tf.reduce_max(tf.reduce_sum(tf.cast(flags, tf.int32), axis=1))
    return tf.maximum(count, 1)


def _deserialize(value):
    return keras.saving.deserialize_keras_object(value) if isinstance(value, dict) else value


def _pad_slots(values, total):
    """Zero-pads axis 1 of `values` `[B, U, ...]` to `total` slots."""
    pad = [[0, 0], [0, total - tf.shape(values)[1]]] + [[0, 0]] * (len(values.shape) - 2)
    return tf.pad(values, pad)


_BRANCHES = {
    "mask": ("mask_roi_pool", "mask_head", "mask_predictor"),
    "keypoint": ("keypoint_roi_pool", "keypoint_head", "keypoint_predictor"),
    "maskiou": ("maskiou_head", "maskiou_predictor"),
}
_PARTS = ("box_roi_pool", "box_head", "box_predictor", "box_matcher", "box_sampler",
          *(part for parts in _BRANCHES.values() for part in parts))


@keras.saving.register_keras_serializable(package="segzoo")
class RoIHeads(keras.layers.Layer):
    """Box branch plus optional mask / keypoint / MaskIoU branches (module docstring).

    Args:
        box_roi_pool, box_head, box_predictor: the box branch
            (`MultiLevelRoIPooler(7)`, `TwoMLPHead`, `BoxPredictor`).
        box_matcher, box_sampler: `Matcher(0.5, 0.5)`, `BalancedPositiveNegativeSampler(512, 0.25)`.
        box_weights: box coder weights (10, 10, 5, 5).
        box_smooth_l1_beta: beta of the box regression loss (1; torchvision 1/9).
        score_threshold, nms_threshold, detections_per_image, num_candidates:
            inference (0.05, per-class NMS 0.5, 100 slots, 4096 candidates).
        mask_roi_pool, mask_head, mask_predictor: the mask branch (all or none).
        mask_loss: "sigmoid" | "softmax".
        mask_threshold: probability above which a pasted mask pixel is set.
        keypoint_roi_pool, keypoint_head, keypoint_predictor: the keypoint branch (all or none).
        maskiou_head, maskiou_predictor: the MaskIoU branch (all or none; needs masks).
    """

    def __init__(self, box_roi_pool, box_head, box_predictor, box_matcher, box_sampler,
                 box_weights=(10.0, 10.0, 5.0, 5.0), box_smooth_l1_beta=1.0, score_threshold=0.05,
                 nms_threshold=0.5, detections_per_image=100, num_candidates=4096,
                 mask_roi_pool=None, mask_head=None, mask_predictor=None, mask_loss="sigmoid", mask_threshold=0.5,
                 keypoint_roi_pool=None, keypoint_head=None, keypoint_predictor=None,
                 maskiou_head=None, maskiou_predictor=None, **kwargs):
        super().__init__(**kwargs)
        given = dict(box_roi_pool=box_roi_pool, box_head=box_head, box_predictor=box_predictor,
                     box_matcher=box_matcher, box_sampler=box_sampler, mask_roi_pool=mask_roi_pool,
                     mask_head=mask_head, mask_predictor=mask_predictor, keypoint_roi_pool=keypoint_roi_pool,
                     keypoint_head=keypoint_head, keypoint_predictor=keypoint_predictor,
                     maskiou_head=maskiou_head, maskiou_predictor=maskiou_predictor)
        for name in _PARTS[:5]:
            if given[name] is None:
                raise ValueError(f"RoIHeads needs {name}; received None")
        for branch, parts in _BRANCHES.items():
            present = [given[name] is not None for name in parts]
            if any(present) and not all(present):
                raise ValueError(f"the {branch} branch needs all of {parts} or none; received "
                                 f"{[name for name in parts if given[name] is not None]}")
        if given["maskiou_head"] is not None and given["mask_head"] is None:
            raise ValueError("the MaskIoU branch (mask_scoring) scores masks: it needs the mask branch")
        if mask_loss not in MASK_LOSSES:
            raise ValueError(f"mask_loss must be one of {MASK_LOSSES}, got {mask_loss!r}")
        for name in _PARTS:
            setattr(self, name, _deserialize(given[name]))
        self.box_weights = tuple(float(w) for w in box_weights)
        self.box_coder = BoxCoder(self.box_weights)
        self.box_smooth_l1_beta = float(box_smooth_l1_beta)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.detections_per_image = int(detections_per_image)
        self.num_candidates = int(num_candidates)
        self.mask_loss = mask_loss
        self.mask_threshold = float(mask_threshold)
        classes = {self.box_predictor.num_classes}
        for name in ("mask_predictor", "maskiou_predictor"):
            if getattr(self, name) is not None:
                classes.add(getattr(self, name).num_classes)
        if len(classes) > 1:
            raise ValueError(f"box, mask and MaskIoU predictors disagree on num_classes: {sorted(classes)}")
        if self.has_masks and mask_loss == "softmax" and self.mask_predictor.class_agnostic:
            raise ValueError("mask_loss='softmax' needs one channel per class; it cannot be combined "
                             "with class_agnostic_masks=True")

    # --- what the heads are -------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.box_predictor.num_classes

    @property
    def has_masks(self) -> bool:
        return self.mask_head is not None

    @property
    def has_keypoints(self) -> bool:
        return self.keypoint_head is not None

    @property
    def has_mask_scores(self) -> bool:
        return self.maskiou_head is not None

    @property
    def num_keypoints(self) -> int:
        return self.keypoint_predictor.num_keypoints if self.has_keypoints else 0

    @property
    def loss_names(self) -> tuple:
        names = ("box_class", "box_regression")
        names += ("mask",) * self.has_masks + ("maskiou",) * self.has_mask_scores
        return names + ("keypoint",) * self.has_keypoints

    def build(self, input_shape):
        """`input_shape`: one pyramid level's shape `(B, H, W, C)` (the channels matter)."""
        channels = input_shape[-1]

        def pooled(pool):
            return (None, *pool.output_size, channels)

        if not self.box_head.built:
            self.box_head.build(pooled(self.box_roi_pool))
        if not self.box_predictor.built:
            self.box_predictor.build((None, self.box_head.representation_size))
        if self.has_masks:
            if not self.mask_head.built:
                self.mask_head.build(pooled(self.mask_roi_pool))
            size = [2 * s for s in self.mask_roi_pool.output_size]
            if not self.mask_predictor.built:
                self.mask_predictor.build((None, *size, self.mask_head.deconv_channels))
        if self.has_mask_scores:
            if not self.maskiou_head.built:
                self.maskiou_head.build(pooled(self.mask_roi_pool), (None, *size))
            if not self.maskiou_predictor.built:
                self.maskiou_predictor.build((None, self.maskiou_head.representation_size))
        if self.has_keypoints:
            if not self.keypoint_head.built:
                self.keypoint_head.build(pooled(self.keypoint_roi_pool))
            if not self.keypoint_predictor.built:
                self.keypoint_predictor.build(
                    (None, *self.keypoint_roi_pool.output_size, self.keypoint_head.layers_widths[-1]))
        self.built = True

    # --- branches (RoIs `[B, R, 4]` -> per-RoI outputs `[B, R, ...]`) ----------------------
    @staticmethod
    def _flat(pooled):
        return tf.reshape(pooled, tf.concat([[-1], tf.shape(pooled)[2:]], 0))

    def _box_branch(self, features, rois):
        batch, count = tf.shape(rois)[0], tf.shape(rois)[1]
        pooled = self._flat(self.box_roi_pool(features, rois))
        logits, deltas = self.box_predictor(self.box_head(pooled))
        return (tf.reshape(logits, [batch, count, self.num_classes + 1]),
                tf.reshape(deltas, [batch, count, self.num_classes + 1, 4]))

    def _mask_branch(self, features, rois, active=None):
        """(logits `[B, R, 28, 28, C]`, pooled RoI features `[B * R, 14, 14, F]`).

        `active` (bool `[B, R]`, training: the positives) runs the mask head on those
        RoIs only and leaves zero logits elsewhere, as torchvision runs it on the
        positives: the slots are the batch's largest positive count, so an image with
        few positives would otherwise pay for the fullest one. The masked losses are
        the same either way; under XLA (static shapes) every slot is computed.
        """
        batch, count = tf.shape(rois)[0], tf.shape(rois)[1]
        pooled = self._flat(self.mask_roi_pool(features, rois))
        if active is None or _in_xla_context():
            logits = self.mask_predictor(self.mask_head(pooled))
        else:
            rows = tf.where(tf.reshape(active, [-1]))  # int64 [P, 1]
            computed = self.mask_predictor(self.mask_head(tf.gather_nd(pooled, rows)))
            shape = tf.concat([tf.shape(pooled, out_type=tf.int64)[:1],
                               tf.shape(computed, out_type=tf.int64)[1:]], 0)
            logits = tf.scatter_nd(rows, computed, shape)
        size = logits.shape[1]
        return tf.reshape(logits, [batch, count, size, size, logits.shape[-1]]), pooled

    def mask_probabilities(self, logits, classes):
        """`[B, R, S, S]` probabilities of each RoI's class from `[B, R, S, S, C]` logits."""
        if self.mask_loss == "softmax":
            logits = tf.nn.softmax(logits, axis=-1)
        else:
            logits = tf.sigmoid(logits)
        channel = tf.zeros_like(classes) if self.mask_predictor.class_agnostic else classes
        return tf.gather(tf.transpose(logits, [0, 1, 4, 2, 3]), channel, batch_dims=2)

    def _maskiou_branch(self, pooled, probabilities):
        """Predicted MaskIoU `[B, R, K + 1]` (or `[B, R, 1]`) from the mask branch's pooled features."""
        batch, count = tf.shape(probabilities)[0], tf.shape(probabilities)[1]
        size = probabilities.shape[-1]
        masks = tf.reshape(tf.stop_gradient(probabilities), [-1, size, size])
        predicted = self.maskiou_predictor(self.maskiou_head(pooled, masks))
        return tf.reshape(predicted, [batch, count, predicted.shape[-1]])

    def _keypoint_branch(self, features, rois):
        """Heatmap logits `[B, R, 56, 56, K]`."""
        batch, count = tf.shape(rois)[0], tf.shape(rois)[1]
        heatmaps = self.keypoint_predictor(self.keypoint_head(self._flat(self.keypoint_roi_pool(features, rois))))
        size = heatmaps.shape[1]
        return tf.reshape(heatmaps, [batch, count, size, size, self.num_keypoints])

    # --- training ----------------------------------------------------------------------------
    def compute_losses(self, features, proposals, proposal_valid, targets_dict, seed=None):
        """Losses `loss_names` -> float32 scalars.

        Args:
            features: the FPN pyramid dict.
            proposals: float32 `[B, P, 4]`; proposal_valid: bool `[B, P]`.
            targets_dict: "boxes" float32 `[B, M, 4]`, "classes" int32 `[B, M]`
                (0 = padding); with masks "masks" uint8 `[B, M, H, W]` (the
                padded input's size) or the box-resolution "mask_crops" float
                `[B, M, C, C]` over the GT boxes (`targets.roi_align_mask_crops`;
                used when present); with keypoints "keypoints" float32
                `[B, M, K, 3]` (x, y, v) in the same pixels.
            seed: the samplers' `SeedGenerator`.
        """
        for key, needed in (("masks", self.has_masks), ("keypoints", self.has_keypoints)):
            if needed and key not in targets_dict and not (key == "masks" and "mask_crops" in targets_dict):
                raise ValueError(f"this model's {key} branch needs the training target {key!r} (masks: uint8 "
                                 "[B, M, H, W]; keypoints: float32 [B, M, K, 3] x, y, v); the batch has "
                                 f"{sorted(targets_dict)}")
        gt_boxes = tf.cast(targets_dict["boxes"], tf.float32)
        gt_classes = tf.cast(targets_dict["classes"], tf.int32)
        roi = targets.roi_targets(proposals, proposal_valid, gt_boxes, gt_classes, self.box_matcher,
                                  self.box_sampler, self.box_coder, seed=seed)
        class_logits, box_deltas = self._box_branch(features, roi["rois"])
        values = {
            "box_class": losses.box_class_loss(class_logits, roi["labels"], roi["valid"]),
            "box_regression": losses.box_regression_loss(box_deltas, roi["labels"], roi["regression"],
                                                         roi["positive"], roi["valid"], self.box_smooth_l1_beta),
        }
        if not (self.has_masks or self.has_keypoints):
            return values
        # Positives come first (all within the sampler's positive slots): the branches run
        # on the slots that hold a positive in some image, as torchvision runs them on
        # the positives only (all positive slots under XLA, static shapes).
        slots = used_slots(roi["positive"][:, :self.box_sampler.num_positive_slots])
        rois, positive = roi["rois"][:, :slots], roi["positive"][:, :slots]
        labels, matched = roi["labels"][:, :slots], roi["matched"][:, :slots]
        if self.has_masks:
            mask_logits, pooled = self._mask_branch(features, rois, positive)
            size = mask_logits.shape[2]
            if "mask_crops" in targets_dict:
                crops = tf.cast(targets_dict["mask_crops"], tf.float32)
                mask_targets = targets.roi_align_mask_crops(crops, gt_boxes, rois, matched, size)
                # Full GT area: the crop's mean coverage times its box's area.
                areas = tf.reduce_mean(crops, axis=[2, 3]) * box_ops.box_area(gt_boxes)
            else:
                gt_masks = tf.cast(targets_dict["masks"], tf.uint8)
                mask_targets = targets.roi_align_masks(gt_masks, rois, matched, size)
                areas = tf.reduce_sum(tf.cast(gt_masks, tf.float32), axis=[2, 3])
            values["mask"] = losses.mask_loss(mask_logits, mask_targets, labels, positive, self.mask_loss,
                                              self.mask_predictor.class_agnostic)
            if self.has_mask_scores:
                probabilities = self.mask_probabilities(mask_logits, labels)
                iou = maskiou_head.maskiou_targets(probabilities, mask_targets, rois,
                                                   box_ops.gather_rows(areas, matched))
                predicted = self._maskiou_branch(pooled, probabilities)
                values["maskiou"] = maskiou_head.maskiou_loss(predicted, labels, iou, positive)
        if self.has_keypoints:
            heatmaps = self._keypoint_branch(features, rois)
            keypoints = box_ops.gather_rows(tf.cast(targets_dict["keypoints"], tf.float32), matched)
            cells, valid = keypoint_ops.keypoints_to_heatmap_targets(keypoints, rois, heatmaps.shape[2])
            values["keypoint"] = keypoint_ops.keypoint_loss(heatmaps, cells, valid & positive[..., None])
        return values

    # --- inference ---------------------------------------------------------------------------
    def detect(self, features, proposals, proposal_valid, image_size):
        """Detections in the (resized) network-input pixels of `image_size` = (height, width).

        Returns:
            dict "boxes" float32 `[B, D, 4]`, "scores" `[B, D]`, "classes" int32
            `[B, D]`, "valid" bool `[B, D]`; with masks "mask_probabilities"
            float32 `[B, U, 28, 28]` (U <= D leading slots, see module
            docstring); with MaskIoU "mask_scores" `[B, D]`; with keypoints
            "keypoints" float32 `[B, D, K, 3]` (x, y, score logit). Empty slots are zeros.
        """
        logits, deltas = self._box_branch(features, proposals)
        detections = postprocess.detect(
            logits, deltas, proposals, proposal_valid, image_size, self.box_coder,
            score_threshold=self.score_threshold, nms_threshold=self.nms_threshold,
            detections_per_image=self.detections_per_image, num_candidates=self.num_candidates)
        used = used_slots(detections["valid"])
        valid = detections["valid"][:, :used]
        boxes, classes = detections["boxes"][:, :used], detections["classes"][:, :used]
        total = self.detections_per_image
        if self.has_masks:
            mask_logits, pooled = self._mask_branch(features, boxes)
            probabilities = self.mask_probabilities(mask_logits, classes)
            detections["mask_probabilities"] = probabilities
            if self.has_mask_scores:
                predicted = self._maskiou_branch(pooled, probabilities)
                scores = maskiou_head.mask_scores(detections["scores"][:, :used], predicted, classes)
                detections["mask_scores"] = _pad_slots(tf.where(valid, scores, 0.0), total)
        if self.has_keypoints:
            keypoints = keypoint_ops.heatmaps_to_keypoints(self._keypoint_branch(features, boxes), boxes)
            # expand_dims, not valid[..., None, None]: a new-axis StridedSlice is TF Select only in TFLite.
            keep = tf.expand_dims(tf.expand_dims(valid, -1), -1)
            detections["keypoints"] = _pad_slots(tf.where(keep, keypoints, 0.0), total)
        return detections

    def get_config(self):
        config = super().get_config()
        for name in _PARTS:
            value = getattr(self, name)
            config[name] = None if value is None else keras.saving.serialize_keras_object(value)
        config.update(box_weights=list(self.box_weights), box_smooth_l1_beta=self.box_smooth_l1_beta,
                      score_threshold=self.score_threshold, nms_threshold=self.nms_threshold,
                      detections_per_image=self.detections_per_image, num_candidates=self.num_candidates,
                      mask_loss=self.mask_loss, mask_threshold=self.mask_threshold)
        return config
