"""Mask R-CNN (He et al. 2017): ResNet-FPN, RPN, RoIAlign box and mask heads.

    model = segzoo.get_model("mask_rcnn", num_classes=3, backbone="resnet18")
    out = model(images)            # images float32 [B, H, W, 3] RGB in [0, 255]
    out["boxes"]                   # float32 [B, N, 4] xyxy input pixels, N = max_detections
    out["scores"], out["classes"]  # float32 [B, N], int32 [B, N] (1..K, 0 = empty slot)
    out["masks"]                   # uint8 {0, 1} [B, N, H, W] pasted into the input image
    out["num_detections"]          # int32 [B]; slots >= num_detections are zeros

Inference resizes the images inside (short side `min_size`, long side at most
`max_size`, bilinear), pads them bottom/right to a multiple of 32, and maps
every output back to input pixels. Training (`model.fit`) takes the batches of
`segzoo.data.pipeline.instance_train_pipeline` as they are (already resized
and padded; a side that is not a multiple of 32 is padded): `(images [B, S, S, 3],
{"boxes" [B, M, 4], "classes" [B, M] (0 = padding), "masks" uint8 [B, M, S, S]})`.
Losses ("rpn_objectness", "rpn_box", "box_class", "box_regression", "mask" and
their sum "loss") are reported as metrics; compile with an optimizer only.

Every component is injectable (torchvision style): pass an instance to
replace the default built from the scalar arguments.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import control_flow_util

from segzoo.models.base import InputSpec, SegmentationModel, resolve_class_names, traced
from segzoo.models.mask_rcnn import losses, postprocess, targets
from segzoo.models.mask_rcnn.anchors import AnchorGenerator
from segzoo.models.mask_rcnn.box_coder import BoxCoder
from segzoo.models.mask_rcnn.box_head import BoxPredictor, TwoMLPHead
from segzoo.models.mask_rcnn.mask_head import MaskHead, MaskPredictor
from segzoo.models.mask_rcnn.matcher import Matcher
from segzoo.models.mask_rcnn.poolers import POOLERS, MultiLevelRoIPooler
from segzoo.models.mask_rcnn.rpn import ProposalGenerator, RPNHead
from segzoo.models.mask_rcnn.sampler import BalancedPositiveNegativeSampler
from segzoo.registry import register_model

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
MASK_LOSSES = ("sigmoid", "softmax")
LOSS_NAMES = ("rpn_objectness", "rpn_box", "box_class", "box_regression", "mask")

_COMPONENTS = ("backbone_model", "fpn", "anchor_generator", "rpn_head", "proposal_generator",
               "rpn_matcher", "rpn_sampler", "box_roi_pooler", "box_head", "box_predictor",
               "box_matcher", "box_sampler", "mask_roi_pooler", "mask_head", "mask_predictor")


def _in_xla_context():
    """True while tracing for XLA (`jit_compile=True`), where shapes must stay static."""
    return control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph())


def _used_slots(flags):
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
    if isinstance(value, dict):
        return keras.saving.deserialize_keras_object(value)
    return value


@keras.saving.register_keras_serializable(package="segzoo")
class MaskRCNN(SegmentationModel, keras.Model):
    """Mask R-CNN with a ResNet-FPN backbone.

    Args:
        num_classes: K foreground classes (ids 1..K; 0 is background).
        backbone: "resnet18" | "resnet34" | "resnet50" | "resnet101".
        backbone_weights: None, "imagenet" or a weights file (see
            `segzoo.models.backbones.resnet.resnet_backbone`).
        backbone_layout: "keras" or "torchvision".
        freeze_batchnorm: frozen BN in the backbone; None = True when
            `backbone_weights` is given (torchvision's rule), else False.
        trainable_layers: backbone stages trained, "heads" | "2+" | "3+" |
            "4+" | "5+" | "all"; None = "3+" with pretrained weights, else "all".
        min_size, max_size: inference resize (short side, long side cap).
        max_detections: N, detection slots per image.
        roi_pooler: "align" | "warp" | "pool".
        mask_loss: "sigmoid" (per-class BCE) | "softmax" (ablation).
        class_agnostic_masks: one mask for all classes.
        class_names: K + 1 names (index 0 = background); None = defaults.
        category_ids: the dataset's ids of classes 1..K (default 1..K).
        fpn_channels, representation_size (fc6/fc7), mask_head_channels:
            head widths (256, 1024, 256 in the paper).
        rpn_*, box_*: the paper's settings (module docstrings of the parts);
            box_num_candidates caps the (box, class) pairs entering the final NMS.
        seed: seed of the samplers' random draws.
        backbone_model ... mask_predictor: injected components (None = default).
    """

    task = "instance"
    # Top-level layers whose shapes depend on the class count (skipped when fine-tuning).
    class_dependent_layers = ("box_predictor", "mask_predictor")
    # Static shapes and XLA-kernel ops only (padded NMS, gather-based RoIAlign, no
    # crop_and_resize / combined NMS): inference and the losses compile with jit_compile=True.
    supports_jit = True

    def __init__(
        self,
        num_classes=80,
        backbone="resnet50",
        backbone_weights=None,
        backbone_layout="keras",
        freeze_batchnorm=None,
        trainable_layers=None,
        min_size=800,
        max_size=1333,
        max_detections=100,
        roi_pooler="align",
        roi_aligned=True,
        mask_loss="sigmoid",
        class_agnostic_masks=False,
        class_names=None,
        category_ids=None,
        fpn_channels=256,
        anchor_sizes=(32, 64, 128, 256, 512),
        aspect_ratios=(0.5, 1.0, 2.0),
        rpn_pre_nms_top_n_train=2000,
        rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_train=2000,
        rpn_post_nms_top_n_test=1000,
        rpn_nms_threshold=0.7,
        rpn_fg_iou_threshold=0.7,
        rpn_bg_iou_threshold=0.3,
        rpn_batch_size_per_image=256,
        rpn_positive_fraction=0.5,
        rpn_smooth_l1_beta=1.0 / 9,
        box_fg_iou_threshold=0.5,
        box_bg_iou_threshold=0.5,
        box_batch_size_per_image=512,
        box_positive_fraction=0.25,
        box_weights=(10.0, 10.0, 5.0, 5.0),
        box_smooth_l1_beta=1.0,
        box_score_threshold=0.05,
        box_nms_threshold=0.5,
        box_num_candidates=4096,
        representation_size=1024,
        mask_head_channels=256,
        mask_threshold=0.5,
        seed=None,
        backbone_model=None,
        fpn=None,
        anchor_generator=None,
        rpn_head=None,
        proposal_generator=None,
        rpn_matcher=None,
        rpn_sampler=None,
        box_roi_pooler=None,
        box_head=None,
        box_predictor=None,
        box_matcher=None,
        box_sampler=None,
        mask_roi_pooler=None,
        mask_head=None,
        mask_predictor=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        num_classes = int(num_classes)
        if num_classes < 1:
            raise ValueError(f"num_classes (foreground classes K) must be >= 1, got {num_classes}")
        if backbone_model is None and backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        if roi_pooler not in POOLERS:
            raise ValueError(f"roi_pooler must be one of {POOLERS}, got {roi_pooler!r}")
        if mask_loss not in MASK_LOSSES:
            raise ValueError(f"mask_loss must be one of {MASK_LOSSES}, got {mask_loss!r}")
        if mask_loss == "softmax" and class_agnostic_masks:
            raise ValueError("mask_loss='softmax' needs one channel per class; it cannot be combined "
                             "with class_agnostic_masks=True")
        if int(min_size) < 32 or int(max_size) < int(min_size):
            raise ValueError(f"need 32 <= min_size <= max_size, got min_size={min_size}, max_size={max_size}")
        if category_ids is not None and len(category_ids) != num_classes:
            raise ValueError(f"category_ids has {len(category_ids)} entries but num_classes={num_classes}")

        # === Config ===
        self.num_classes = num_classes
        self.backbone_name = backbone
        self.backbone_weights = backbone_weights
        self.backbone_layout = backbone_layout
        self.min_size = int(min_size)
        self.max_size = int(max_size)
        self.max_detections = int(max_detections)
        self.roi_pooler = roi_pooler
        self.roi_aligned = bool(roi_aligned)
        self.mask_loss = mask_loss
        self.class_agnostic_masks = bool(class_agnostic_masks)
        self.class_names = resolve_class_names(class_names, num_classes + 1)
        self.category_ids = [int(c) for c in category_ids] if category_ids is not None else list(
            range(1, num_classes + 1))
        self.fpn_channels = int(fpn_channels)
        self.anchor_sizes = tuple(int(s) for s in anchor_sizes)
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)
        self.rpn_pre_nms_top_n_train = int(rpn_pre_nms_top_n_train)
        self.rpn_pre_nms_top_n_test = int(rpn_pre_nms_top_n_test)
        self.rpn_post_nms_top_n_train = int(rpn_post_nms_top_n_train)
        self.rpn_post_nms_top_n_test = int(rpn_post_nms_top_n_test)
        self.rpn_nms_threshold = float(rpn_nms_threshold)
        self.rpn_fg_iou_threshold = float(rpn_fg_iou_threshold)
        self.rpn_bg_iou_threshold = float(rpn_bg_iou_threshold)
        self.rpn_batch_size_per_image = int(rpn_batch_size_per_image)
        self.rpn_positive_fraction = float(rpn_positive_fraction)
        self.rpn_smooth_l1_beta = float(rpn_smooth_l1_beta)
        self.box_fg_iou_threshold = float(box_fg_iou_threshold)
        self.box_bg_iou_threshold = float(box_bg_iou_threshold)
        self.box_batch_size_per_image = int(box_batch_size_per_image)
        self.box_positive_fraction = float(box_positive_fraction)
        self.box_weights = tuple(float(w) for w in box_weights)
        self.box_smooth_l1_beta = float(box_smooth_l1_beta)
        self.box_score_threshold = float(box_score_threshold)
        self.box_nms_threshold = float(box_nms_threshold)
        self.box_num_candidates = int(box_num_candidates)
        self.representation_size = int(representation_size)
        self.mask_head_channels = int(mask_head_channels)
        self.mask_threshold = float(mask_threshold)
        self.seed = seed
        injected = {
            "backbone_model": backbone_model, "fpn": fpn, "anchor_generator": anchor_generator,
            "rpn_head": rpn_head, "proposal_generator": proposal_generator, "rpn_matcher": rpn_matcher,
            "rpn_sampler": rpn_sampler, "box_roi_pooler": box_roi_pooler, "box_head": box_head,
            "box_predictor": box_predictor, "box_matcher": box_matcher, "box_sampler": box_sampler,
            "mask_roi_pooler": mask_roi_pooler, "mask_head": mask_head, "mask_predictor": mask_predictor,
        }
        injected = {name: _deserialize(value) for name, value in injected.items()}
        self._injected = {name for name, value in injected.items() if value is not None}

        # === Layers ===
        pretrained = backbone_weights is not None
        freeze = pretrained if freeze_batchnorm is None else bool(freeze_batchnorm)
        stages = trainable_layers or ("3+" if pretrained else "all")
        self.freeze_batchnorm = freeze
        self.trainable_layers = stages
        if injected["backbone_model"] is not None:
            self.backbone = injected["backbone_model"]
        else:
            from segzoo.models.backbones import resnet

            self.backbone = resnet.resnet_backbone(
                int(backbone[len("resnet"):]), backbone_weights, layout=backbone_layout,
                freeze_batchnorm=freeze, trainable_stages=stages, name=backbone)
        if injected["fpn"] is not None:
            self.fpn = injected["fpn"]
        else:
            from segzoo.blocks.fpn import FeaturePyramid

            self.fpn = FeaturePyramid(self.fpn_channels, extra_pool_level=True, name="fpn")
        self.anchor_generator = injected["anchor_generator"] or AnchorGenerator(
            sizes=[(s,) for s in self.anchor_sizes], aspect_ratios=[self.aspect_ratios])
        self.rpn_head = injected["rpn_head"] or RPNHead(
            self.anchor_generator.num_anchors_per_location()[0], self.fpn_channels, name="rpn_head")
        self.proposal_generator = injected["proposal_generator"] or ProposalGenerator(
            self.rpn_pre_nms_top_n_train, self.rpn_pre_nms_top_n_test, self.rpn_post_nms_top_n_train,
            self.rpn_post_nms_top_n_test, self.rpn_nms_threshold)
        self.rpn_matcher = injected["rpn_matcher"] or Matcher(
            self.rpn_fg_iou_threshold, self.rpn_bg_iou_threshold, allow_low_quality_matches=True)
        self.rpn_sampler = injected["rpn_sampler"] or BalancedPositiveNegativeSampler(
            self.rpn_batch_size_per_image, self.rpn_positive_fraction)
        self.rpn_box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.box_coder = BoxCoder(self.box_weights)
        self.box_roi_pooler = injected["box_roi_pooler"] or MultiLevelRoIPooler(
            roi_pooler, 7, sampling_ratio=2, aligned=self.roi_aligned)
        self.box_head = injected["box_head"] or TwoMLPHead(self.representation_size, name="box_head")
        self.box_predictor = injected["box_predictor"] or BoxPredictor(num_classes, name="box_predictor")
        self.box_matcher = injected["box_matcher"] or Matcher(
            self.box_fg_iou_threshold, self.box_bg_iou_threshold, allow_low_quality_matches=False)
        self.box_sampler = injected["box_sampler"] or BalancedPositiveNegativeSampler(
            self.box_batch_size_per_image, self.box_positive_fraction)
        self.mask_roi_pooler = injected["mask_roi_pooler"] or MultiLevelRoIPooler(
            roi_pooler, 14, sampling_ratio=2, aligned=self.roi_aligned)
        self.mask_head = injected["mask_head"] or MaskHead(
            (self.mask_head_channels,) * 4, self.mask_head_channels, name="mask_head")
        self.mask_predictor = injected["mask_predictor"] or MaskPredictor(
            num_classes, class_agnostic=self.class_agnostic_masks, name="mask_predictor")
        self.seed_generator = keras.random.SeedGenerator(seed, name="sampler_seed")
        self.loss_trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", *LOSS_NAMES)}
        self._build_layers()

    # --- construction --------------------------------------------------------------------
    def _build_layers(self):
        shapes = {key: tuple(value.shape) for key, value in self.backbone.output.items()}
        if not self.fpn.built:
            self.fpn.build(shapes)
        channels = self.fpn_channels
        level = (None, None, None, channels)
        if not self.rpn_head.built:
            self.rpn_head.build([level])
        box_size = self.box_roi_pooler.output_size
        if not self.box_head.built:
            self.box_head.build((None, box_size, box_size, channels))
        if not self.box_predictor.built:
            self.box_predictor.build((None, self.box_head.representation_size))
        mask_size = self.mask_roi_pooler.output_size
        if not self.mask_head.built:
            self.mask_head.build((None, mask_size, mask_size, channels))
        if not self.mask_predictor.built:
            self.mask_predictor.build((None, 2 * mask_size, 2 * mask_size, self.mask_head.deconv_channels))
        self.built = True

    def build(self, input_shape=None):
        self._build_layers()

    # --- shared pieces --------------------------------------------------------------------
    def _features(self, images, training):
        pyramid = self.fpn(self.backbone(images, training=training))
        levels = sorted(pyramid, key=lambda key: int(key[1:]))
        return [pyramid[key] for key in levels]

    def _rpn(self, features, image_shape, training, clip_size=None):
        """RPN outputs, anchors (of the padded `image_shape`) and proposals clipped to `clip_size`."""
        objectness, deltas = self.rpn_head(features)
        feature_shapes = [(tf.shape(f)[1], tf.shape(f)[2]) for f in features]
        anchors = self.anchor_generator(image_shape, feature_shapes)
        proposals, valid = self.proposal_generator(
            objectness, deltas, anchors, clip_size or image_shape, training=training)
        return objectness, deltas, anchors, proposals, valid

    def _box_branch(self, features, rois):
        batch, count = tf.shape(rois)[0], tf.shape(rois)[1]
        pooled = self.box_roi_pooler(features[:4], rois)
        logits, deltas = self.box_predictor(self.box_head(pooled))
        return (tf.reshape(logits, [batch, count, self.num_classes + 1]),
                tf.reshape(deltas, [batch, count, self.num_classes + 1, 4]))

    def _mask_branch(self, features, rois):
        batch, count = tf.shape(rois)[0], tf.shape(rois)[1]
        logits = self.mask_predictor(self.mask_head(self.mask_roi_pooler(features[:4], rois)))
        size = logits.shape[1]
        return tf.reshape(logits, [batch, count, size, size, logits.shape[-1]])

    @staticmethod
    def _pad_to_32(images):
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        pad_h = (32 - height % 32) % 32
        pad_w = (32 - width % 32) % 32
        return tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])

    # --- inference ------------------------------------------------------------------------
    def call(self, images, training=False):
        """Detections (module docstring) for float32 images `[B, H, W, 3]` in [0, 255].

        Called eagerly, it runs a `tf.function` traced once for any image size
        (per-op eager execution of the whole detector would be far slower).
        """
        images = tf.cast(images, tf.float32)
        if tf.executing_eagerly():
            return traced(self, "inference", self._inference,
                          input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])(images)
        return self._inference(images)

    @property
    def training_input_spec(self) -> InputSpec:
        return InputSpec(min_size=self.min_size, max_size=self.max_size)

    def _inference(self, images):
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        h_f, w_f = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
        scale = tf.minimum(self.min_size / tf.minimum(h_f, w_f), self.max_size / tf.maximum(h_f, w_f))
        new_h = tf.maximum(tf.cast(tf.round(h_f * scale), tf.int32), 1)
        new_w = tf.maximum(tf.cast(tf.round(w_f * scale), tf.int32), 1)
        resized = tf.image.resize(images, tf.stack([new_h, new_w]), method="bilinear")
        padded = self._pad_to_32(resized)
        features = self._features(padded, training=False)
        padded_shape = (tf.shape(padded)[1], tf.shape(padded)[2])
        _, _, _, proposals, valid = self._rpn(features, padded_shape, training=False, clip_size=(new_h, new_w))
        logits, deltas = self._box_branch(features, proposals)
        detections = postprocess.detect(
            logits, deltas, proposals, valid, (new_h, new_w), self.box_coder,
            score_threshold=self.box_score_threshold, nms_threshold=self.box_nms_threshold,
            detections_per_image=self.max_detections, num_candidates=self.box_num_candidates)
        # Valid detections come first: the mask head and the paste-back run on the slots
        # valid in some image (all of them under XLA); the other slots' masks are zeros.
        used = _used_slots(detections["valid"])
        valid = detections["valid"][:, :used]
        mask_logits = self._mask_branch(features, detections["boxes"][:, :used])
        probabilities = self._mask_probabilities(mask_logits, detections["classes"][:, :used])
        # Back to input pixels (per-axis ratios, as torchvision).
        ratio_x = tf.cast(new_w, tf.float32) / w_f
        ratio_y = tf.cast(new_h, tf.float32) / h_f
        boxes = detections["boxes"] / tf.stack([ratio_x, ratio_y, ratio_x, ratio_y])
        boxes = tf.where(detections["valid"][..., None], boxes, 0.0)
        pasted = postprocess.paste_masks(probabilities, boxes[:, :used], height, width)
        masks = tf.logical_and(pasted > self.mask_threshold, valid[:, :, None, None])
        masks = tf.pad(masks, [[0, 0], [0, self.max_detections - tf.shape(masks)[1]], [0, 0], [0, 0]])
        return {
            "boxes": boxes,
            "scores": detections["scores"],
            "classes": detections["classes"],
            "masks": tf.cast(masks, tf.uint8),
            "num_detections": tf.reduce_sum(tf.cast(detections["valid"], tf.int32), axis=1),
        }

    def _mask_probabilities(self, logits, classes):
        """`[B, D, S, S]` probabilities of each detection's class."""
        if self.mask_loss == "softmax":
            logits = tf.nn.softmax(logits, axis=-1)
        else:
            logits = tf.sigmoid(logits)
        channel = tf.zeros_like(classes) if self.class_agnostic_masks else classes
        return tf.gather(tf.transpose(logits, [0, 1, 4, 2, 3]), channel, batch_dims=2)

    # --- training -------------------------------------------------------------------------
    def compute_losses(self, images, targets_dict, training=True):
        """The five losses (float32 scalars) for a training batch (module docstring)."""
        images = self._pad_to_32(tf.cast(images, tf.float32))
        gt_boxes = tf.cast(targets_dict["boxes"], tf.float32)
        gt_classes = tf.cast(targets_dict["classes"], tf.int32)
        gt_masks = tf.cast(targets_dict["masks"], tf.uint8)
        gt_valid = gt_classes > 0
        image_shape = (tf.shape(images)[1], tf.shape(images)[2])
        features = self._features(images, training=training)
        objectness, deltas, anchors, proposals, valid = self._rpn(features, image_shape, training=True)

        rpn = targets.rpn_targets(tf.concat(anchors, 0), gt_boxes, gt_valid, self.rpn_matcher,
                                  self.rpn_sampler, self.rpn_box_coder, seed=self.seed_generator)
        sampled_logits = tf.gather(tf.concat(objectness, 1), rpn["indices"], batch_dims=1)
        sampled_deltas = tf.gather(tf.concat(deltas, 1), rpn["indices"], batch_dims=1)
        rpn_positive = tf.logical_and(rpn["valid"], rpn["labels"] > 0.5)

        roi = targets.roi_targets(proposals, valid, gt_boxes, gt_classes, self.box_matcher,
                                  self.box_sampler, self.box_coder, seed=self.seed_generator)
        class_logits, box_deltas = self._box_branch(features, roi["rois"])

        # Positives come first (all within the sampler's positive slots): the mask head
        # runs on the slots that hold a positive in some image, as torchvision runs it
        # on the positives only (all positive slots under XLA, static shapes).
        slots = _used_slots(roi["positive"][:, :self.box_sampler.num_positive_slots])
        positive_rois = roi["rois"][:, :slots]
        positive = roi["positive"][:, :slots]
        mask_logits = self._mask_branch(features, positive_rois)
        mask_size = mask_logits.shape[2]
        mask_targets = targets.roi_align_masks(gt_masks, positive_rois, roi["matched"][:, :slots], mask_size)
        return {
            "rpn_objectness": losses.rpn_objectness_loss(sampled_logits, rpn["labels"], rpn["valid"]),
            "rpn_box": losses.rpn_box_loss(sampled_deltas, rpn["regression"], rpn_positive, rpn["valid"],
                                           self.rpn_smooth_l1_beta),
            "box_class": losses.box_class_loss(class_logits, roi["labels"], roi["valid"]),
            "box_regression": losses.box_regression_loss(box_deltas, roi["labels"], roi["regression"],
                                                         roi["positive"], roi["valid"],
                                                         self.box_smooth_l1_beta),
            "mask": losses.mask_loss(mask_logits, mask_targets, roi["labels"][:, :slots], positive,
                                     self.mask_loss, self.class_agnostic_masks),
        }

    @property
    def metrics(self):
        return list(self.loss_trackers.values())

    def _update_trackers(self, loss_values, total):
        self.loss_trackers["loss"].update_state(total)
        for name in LOSS_NAMES:
            self.loss_trackers[name].update_state(loss_values[name])
        return {name: tracker.result() for name, tracker in self.loss_trackers.items()}

    def train_step(self, data):
        images, targets_dict = data[0], data[1]
        with tf.GradientTape() as tape:
            loss_values = self.compute_losses(images, targets_dict, training=True)
            total = tf.add_n([loss_values[name] for name in LOSS_NAMES])
            regularization = [tf.cast(x, tf.float32) for x in self.losses]
            objective = total + tf.add_n(regularization) if regularization else total
            # Gradients are summed over replicas: scale by the replica count (as Keras does).
            objective = objective / tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, tf.float32)
            scaled = self.optimizer.scale_loss(objective)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        pairs = [(g, v) for g, v in zip(gradients, variables, strict=True) if g is not None]
        self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        return self._update_trackers(loss_values, total)

    def test_step(self, data):
        images, targets_dict = data[0], data[1]
        loss_values = self.compute_losses(images, targets_dict, training=False)
        total = tf.add_n([loss_values[name] for name in LOSS_NAMES])
        return self._update_trackers(loss_values, total)

    # --- serialisation --------------------------------------------------------------------
    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "num_classes": self.num_classes,
            "backbone": self.backbone_name,
            "backbone_weights": None,  # the weights travel in the checkpoint itself
            "backbone_layout": self.backbone_layout,
            "freeze_batchnorm": self.freeze_batchnorm,
            "trainable_layers": self.trainable_layers,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "max_detections": self.max_detections,
            "roi_pooler": self.roi_pooler,
            "roi_aligned": self.roi_aligned,
            "mask_loss": self.mask_loss,
            "class_agnostic_masks": self.class_agnostic_masks,
            "class_names": list(self.class_names),
            "category_ids": list(self.category_ids),
            "fpn_channels": self.fpn_channels,
            "anchor_sizes": list(self.anchor_sizes),
            "aspect_ratios": list(self.aspect_ratios),
            "rpn_pre_nms_top_n_train": self.rpn_pre_nms_top_n_train,
            "rpn_pre_nms_top_n_test": self.rpn_pre_nms_top_n_test,
            "rpn_post_nms_top_n_train": self.rpn_post_nms_top_n_train,
            "rpn_post_nms_top_n_test": self.rpn_post_nms_top_n_test,
            "rpn_nms_threshold": self.rpn_nms_threshold,
            "rpn_fg_iou_threshold": self.rpn_fg_iou_threshold,
            "rpn_bg_iou_threshold": self.rpn_bg_iou_threshold,
            "rpn_batch_size_per_image": self.rpn_batch_size_per_image,
            "rpn_positive_fraction": self.rpn_positive_fraction,
            "rpn_smooth_l1_beta": self.rpn_smooth_l1_beta,
            "box_fg_iou_threshold": self.box_fg_iou_threshold,
            "box_bg_iou_threshold": self.box_bg_iou_threshold,
            "box_batch_size_per_image": self.box_batch_size_per_image,
            "box_positive_fraction": self.box_positive_fraction,
            "box_weights": list(self.box_weights),
            "box_smooth_l1_beta": self.box_smooth_l1_beta,
            "box_score_threshold": self.box_score_threshold,
            "box_nms_threshold": self.box_nms_threshold,
            "box_num_candidates": self.box_num_candidates,
            "representation_size": self.representation_size,
            "mask_head_channels": self.mask_head_channels,
            "mask_threshold": self.mask_threshold,
            "seed": self.seed,
        }
        for name in _COMPONENTS:
            value = None
            if name in self._injected:
                value = keras.saving.serialize_keras_object(
                    self.backbone if name == "backbone_model" else getattr(self, name))
            config[name] = value
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@register_model(
    "mask_rcnn", task="instance",
    description="Mask R-CNN, ResNet-FPN (He et al. 2017); instance segmentation",
    default_kwargs={"num_classes": 3, "backbone": "resnet18"},
)
def mask_rcnn(num_classes=80, **kwargs) -> MaskRCNN:
    """Builds `MaskRCNN` (see its arguments); `num_classes` counts foreground classes."""
    return MaskRCNN(num_classes=num_classes, **kwargs)
