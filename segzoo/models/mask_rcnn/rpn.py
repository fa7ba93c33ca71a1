"""Region proposal network: the shared head and proposal generation.

`RPNHead` runs one 3x3 conv + ReLU and two 1x1 convs (objectness logits, box
deltas) over every FPN level with shared weights (torchvision's RPNHead, init
normal std 0.01, bias 0). `ProposalGenerator` turns its outputs into a fixed
number of proposals per image: per level the `pre_nms_top_n` highest
objectness anchors are decoded (weights 1, 1, 1, 1) and clipped to the image,
boxes smaller than `min_size` are marked invalid, one NMS over all levels
(levels never suppress each other) at `nms_threshold` keeps the
`post_nms_top_n` best. Output slots that no proposal fills are marked invalid,
never dropped, so shapes stay static.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from segzoo.models.mask_rcnn import box_ops
from segzoo.models.mask_rcnn.box_coder import BoxCoder


@keras.saving.register_keras_serializable(package="segzoo")
class RPNHead(keras.layers.Layer):
    """Objectness and box deltas for every anchor of every level.

    Args:
        num_anchors: A, anchors per location.
        num_channels: channels of the 3x3 conv (the FPN width, 256).
    Call:
        features: list of float `[B, H_l, W_l, C]`.
    Returns:
        `(objectness, deltas)`: lists per level of float32 `[B, H_l*W_l*A]`
        logits and float32 `[B, H_l*W_l*A, 4]` (dx, dy, dw, dh), flattened
        row-major over locations then anchors (the anchor generator's order).
    """

    def __init__(self, num_anchors=3, num_channels=256, **kwargs):
        super().__init__(**kwargs)
        self.num_anchors = int(num_anchors)
        self.num_channels = int(num_channels)
        init = keras.initializers.RandomNormal(stddev=0.01)
        self.conv = keras.layers.Conv2D(
            self.num_channels, 3, padding="same", activation="relu", kernel_initializer=init,
            dtype=self.dtype_policy, name="conv")
        # The predictions compute in float32 under a mixed policy (Keras' advice for the
        # last layers): bfloat16's 8-bit mantissa ties objectness logits and shifts deltas,
        # which reorders top-k / NMS and so changes the proposals.
        self.cls_logits = keras.layers.Conv2D(
            self.num_anchors, 1, kernel_initializer=init, dtype="float32", name="cls_logits")
        self.bbox_pred = keras.layers.Conv2D(
            4 * self.num_anchors, 1, kernel_initializer=init, dtype="float32", name="bbox_pred")

    def build(self, input_shape):
        shape = tuple(input_shape[0])
        self.conv.build(shape)
        hidden = shape[:-1] + (self.num_channels,)
        self.cls_logits.build(hidden)
        self.bbox_pred.build(hidden)
        self.built = True

    def call(self, features):
        objectness, deltas = [], []
        for feature in features:
            hidden = self.conv(feature)
            logits = tf.cast(self.cls_logits(hidden), tf.float32)
            boxes = tf.cast(self.bbox_pred(hidden), tf.float32)
            batch = tf.shape(logits)[0]
            objectness.append(tf.reshape(logits, [batch, -1]))
            deltas.append(tf.reshape(boxes, [batch, -1, 4]))
        return objectness, deltas

    def get_config(self):
        config = super().get_config()
        config.update({"num_anchors": self.num_anchors, "num_channels": self.num_channels})
        return config


@keras.saving.register_keras_serializable(package="segzoo")
class ProposalGenerator:
    """Fixed-size proposals from RPN outputs (no weights).

    Args:
        pre_nms_top_n_train / pre_nms_top_n_test: candidates kept per level.
        post_nms_top_n_train / post_nms_top_n_test: proposals per image.
        nms_threshold: IoU of the NMS over candidates of the same level.
        min_size: boxes with a side below this (pixels) are invalid.
        score_threshold: candidates with sigmoid(objectness) below it are invalid.
        box_coder: decodes deltas (default weights (1, 1, 1, 1)).
    """

    def __init__(self, pre_nms_top_n_train=2000, pre_nms_top_n_test=1000, post_nms_top_n_train=2000,
                 post_nms_top_n_test=1000, nms_threshold=0.7, min_size=1e-3, score_threshold=0.0,
                 box_coder=None):
        self.pre_nms_top_n_train = int(pre_nms_top_n_train)
        self.pre_nms_top_n_test = int(pre_nms_top_n_test)
        self.post_nms_top_n_train = int(post_nms_top_n_train)
        self.post_nms_top_n_test = int(post_nms_top_n_test)
        self.nms_threshold = float(nms_threshold)
        self.min_size = float(min_size)
        self.score_threshold = float(score_threshold)
        if isinstance(box_coder, dict):
            box_coder = keras.saving.deserialize_keras_object(box_coder)
        self.box_coder = box_coder if box_coder is not None else BoxCoder((1.0, 1.0, 1.0, 1.0))

    def post_nms_top_n(self, training):
        return self.post_nms_top_n_train if training else self.post_nms_top_n_test

    def __call__(self, objectness, deltas, anchors, image_size, training=False):
        """Proposals.

        Args:
            objectness: list per level of float32 `[B, N_l]` logits.
            deltas: list per level of float32 `[B, N_l, 4]`.
            anchors: list per level of float32 `[N_l, 4]` xyxy pixels.
            image_size: (height, width) boxes are clipped to (pixels).
            training: picks the train or test top-n.
        Returns:
            `(proposals, valid)`: float32 `[B, P, 4]` xyxy pixels (gradient
            stopped) and bool `[B, P]`, P = post_nms_top_n.
        """
        pre_nms = self.pre_nms_top_n_train if training else self.pre_nms_top_n_test
        boxes_all, scores_all, levels_all = [], [], []
        for level, (logits, level_deltas, level_anchors) in enumerate(
                zip(objectness, deltas, anchors, strict=True)):
            logits = tf.stop_gradient(logits)
            num = logits.shape[1]
            k = min(pre_nms, num) if num is not None else tf.minimum(pre_nms, tf.shape(logits)[1])
            top_scores, top_idx = tf.math.top_k(logits, k=k)
            top_deltas = tf.gather(tf.stop_gradient(level_deltas), top_idx, batch_dims=1)
            top_anchors = tf.gather(level_anchors, top_idx)
            boxes = self.box_coder.decode(top_deltas, top_anchors)
            boxes_all.append(box_ops.clip_boxes(boxes, image_size[0], image_size[1]))
            scores_all.append(top_scores)
            levels_all.append(tf.fill(tf.shape(top_scores), level))
        boxes = tf.concat(boxes_all, axis=1)
        scores = tf.concat(scores_all, axis=1)
        levels = tf.concat(levels_all, axis=1)
        valid = tf.logical_and(box_ops.nonempty(boxes, self.min_size),
                               tf.sigmoid(scores) >= self.score_threshold)
        valid = tf.logical_and(valid, tf.math.is_finite(scores))
        keep, keep_valid = box_ops.nms_padded(
            boxes, scores, valid, self.nms_threshold, self.post_nms_top_n(training), groups=levels)
        proposals = box_ops.gather_rows(boxes, keep)
        proposals = tf.where(keep_valid[..., None], proposals, tf.zeros_like(proposals))
        return tf.stop_gradient(proposals), keep_valid

    def get_config(self):
        return {
            "pre_nms_top_n_train": self.pre_nms_top_n_train,
            "pre_nms_top_n_test": self.pre_nms_top_n_test,
            "post_nms_top_n_train": self.post_nms_top_n_train,
            "post_nms_top_n_test": self.post_nms_top_n_test,
            "nms_threshold": self.nms_threshold,
            "min_size": self.min_size,
            "score_threshold": self.score_threshold,
            "box_coder": keras.saving.serialize_keras_object(self.box_coder),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _deserialize(value):
    return keras.saving.deserialize_keras_object(value) if isinstance(value, dict) else value


@keras.saving.register_keras_serializable(package="segzoo")
class RegionProposalNetwork(keras.layers.Layer):
    """torchvision's `RegionProposalNetwork`: anchors, head, proposals and the RPN losses.

    Args:
        anchor_generator: `AnchorGenerator` (one size per level, 32..512; ratios 0.5, 1, 2).
        head: `RPNHead`.
        proposal_generator: `ProposalGenerator` (top-n, NMS 0.7).
        matcher: `Matcher(0.7, 0.3, allow_low_quality_matches=True)`.
        sampler: `BalancedPositiveNegativeSampler(256, 0.5)`.
        smooth_l1_beta: beta of the box loss (1/9, torchvision).
    The box coder has weights (1, 1, 1, 1). Weights live in `head` only.
    """

    def __init__(self, anchor_generator, head, proposal_generator, matcher, sampler, smooth_l1_beta=1.0 / 9,
                 **kwargs):
        super().__init__(**kwargs)
        self.anchor_generator = _deserialize(anchor_generator)
        self.head = _deserialize(head)
        self.proposal_generator = _deserialize(proposal_generator)
        self.matcher = _deserialize(matcher)
        self.sampler = _deserialize(sampler)
        self.smooth_l1_beta = float(smooth_l1_beta)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))

    def build(self, input_shape=None):
        if not self.head.built:
            self.head.build([input_shape])
        self.built = True

    def call(self, features, image_shape, clip_size=None, training=False):
        """Proposals for the FPN levels `features` (list, finest first) of a padded `image_shape`.

        Returns:
            dict "proposals" float32 `[B, P, 4]` xyxy pixels clipped to
            `clip_size` (default `image_shape`), "valid" bool `[B, P]`, and the
            raw "objectness" / "deltas" (lists per level) and "anchors" for `losses`.
        """
        objectness, deltas = self.head(features)
        feature_shapes = [(tf.shape(f)[1], tf.shape(f)[2]) for f in features]
        anchors = self.anchor_generator(image_shape, feature_shapes)
        proposals, valid = self.proposal_generator(
            objectness, deltas, anchors, clip_size or image_shape, training=training)
        return {"proposals": proposals, "valid": valid, "objectness": objectness, "deltas": deltas,
                "anchors": anchors}

    def losses_for(self, outputs, gt_boxes, gt_valid, seed=None):
        """`{"rpn_objectness", "rpn_box"}` float32 scalars for `call`'s outputs and padded GT boxes."""
        from segzoo.models.mask_rcnn import losses, targets

        rpn = targets.rpn_targets(tf.concat(outputs["anchors"], 0), gt_boxes, gt_valid, self.matcher,
                                  self.sampler, self.box_coder, seed=seed)
        sampled_logits = tf.gather(tf.concat(outputs["objectness"], 1), rpn["indices"], batch_dims=1)
        sampled_deltas = tf.gather(tf.concat(outputs["deltas"], 1), rpn["indices"], batch_dims=1)
        positive = tf.logical_and(rpn["valid"], rpn["labels"] > 0.5)
        return {
            "rpn_objectness": losses.rpn_objectness_loss(sampled_logits, rpn["labels"], rpn["valid"]),
            "rpn_box": losses.rpn_box_loss(sampled_deltas, rpn["regression"], positive, rpn["valid"],
                                           self.smooth_l1_beta),
        }

    def get_config(self):
        config = super().get_config()
        for name in ("anchor_generator", "head", "proposal_generator", "matcher", "sampler"):
            config[name] = keras.saving.serialize_keras_object(getattr(self, name))
        config["smooth_l1_beta"] = self.smooth_l1_beta
        return config
