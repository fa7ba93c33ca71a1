"""Mask R-CNN (He et al. 2017), composed of its parts as torchvision's `GeneralizedRCNN`.

    model = segzoo.get_model("mask_rcnn", num_classes=3, backbone="resnet18")
    out = model(images)            # images float32 [B, H, W, 3] RGB in [0, 255]
    out["boxes"]                   # float32 [B, N, 4] xyxy input pixels, N = max_detections
    out["scores"], out["classes"]  # float32 [B, N], int32 [B, N] (1..K, 0 = empty slot)
    out["masks"]                   # uint8 {0, 1} [B, N, H, W] pasted into the input image
    out["num_detections"]          # int32 [B]; slots >= num_detections are zeros
    # with mask scoring (ms_rcnn):  out["mask_scores"] float32 [B, N] = score x predicted MaskIoU
    # with keypoints (keypoint_rcnn): out["keypoints"] float32 [B, N, K, 3] (x, y, score) input
    #     pixels, out["keypoint_scores"] float32 [B, N, K] (the heatmap logit at the peak)

`MaskRCNN(backbone, fpn, rpn, roi_heads, transform)` holds and serialises its
parts; the registered builders (`builders.py`: mask_rcnn, ms_rcnn,
keypoint_rcnn) turn the scalar keyword arguments into parts. The transform
resizes (short side `min_size`, long side at most `max_size`), pads to a
multiple of 32 and maps the outputs back to input pixels.

Training (`model.fit`) takes the batches of
`segzoo.data.pipeline.instance_train_pipeline` as they are (already resized;
padded to a multiple of 32 here): `(images [B, S, S, 3], {"boxes" [B, M, 4],
"classes" [B, M] (0 = padding), "masks" uint8 [B, M, S, S] (mask models),
"keypoints" float32 [B, M, K, 3] (x, y, v; keypoint models)})`. Losses
(`loss_names`: "rpn_objectness", "rpn_box", "box_class", "box_regression",
then "mask", "maskiou", "keypoint" as the branches exist, and their sum
"loss") are reported as metrics; compile with an optimizer only.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from segzoo.blocks.roi_layers import level_of_name
from segzoo.models.base import InputSpec, SegmentationModel, resolve_class_names, traced
from segzoo.models.mask_rcnn import postprocess
from segzoo.models.mask_rcnn.keypoint_names import resolve_keypoint_metadata

RPN_LOSSES = ("rpn_objectness", "rpn_box")


def _without_dtype_policies(config):
    """`config` with every serialised layer dtype policy removed (nested configs too)."""
    if isinstance(config, dict):
        return {key: _without_dtype_policies(value) for key, value in config.items()
                if not (key == "dtype" and isinstance(value, dict)
                        and value.get("class_name") == "DTypePolicy")}
    if isinstance(config, list):
        return [_without_dtype_policies(value) for value in config]
    return config


def _deserialize(value):
    """A part from its config, its layers at the *current* Keras dtype policy.

    The saved configs pin each part's policy (float32 when trained in float32), so a
    checkpoint loaded under `mixed_bfloat16` (`--precision bfloat16`) kept the FPN, RPN
    and RoI heads in float32 and only the backbone followed. Without the saved
    policies a loaded detector computes as one built under the policy; the layers
    meant to stay float32 (the predictions, the keypoint upsampling) say so in code.
    """
    if isinstance(value, dict):
        return keras.saving.deserialize_keras_object(_without_dtype_policies(value))
    return value


@keras.saving.register_keras_serializable(package="segzoo")
class MaskRCNN(SegmentationModel, keras.Model):
    """Two-stage detector: backbone -> FPN -> RPN -> RoI heads, with an input/output transform.

    Args:
        backbone: a `keras.Model` mapping images float32 `[B, H, W, 3]` in
            [0, 255] (or the transform's normalised images) to a dict of
            feature maps `{"C2": stride 4, ..., "C5": stride 32}`.
        fpn: a layer mapping that dict to the pyramid `{"P2", ..., "P6"}`.
        rpn: `RegionProposalNetwork` (reads every pyramid level, finest first).
        roi_heads: `RoIHeads` (box branch; optional mask, keypoint, MaskIoU).
        transform: `DetectionTransform` (default: min_size 800, max_size 1333).
        class_names: K + 1 names (index 0 = background); None = defaults.
        category_ids: the dataset's ids of classes 1..K (default 1..K).
        keypoint_names, keypoint_skeleton: keypoint models: K names (default
            COCO's 17 person keypoints when K == 17, else "keypoint_i") and
            0-based index pairs to draw (default COCO's skeleton with COCO's names).
        seed: seed of the samplers' random draws.
    """

    task = "instance"
    # The top-level layer whose shapes depend on the class count. `load_weights_by_name` matches
    # it sublayer by sublayer, so fine-tuning skips only its box / mask / MaskIoU predictors.
    class_dependent_layers = ("roi_heads",)
    # Static shapes and XLA-kernel ops only (padded NMS, gather-based RoIAlign): inference and
    # the losses compile with jit_compile=True -- keypoint models excepted (set per instance).
    supports_jit = True

    def __init__(self, backbone, fpn, rpn, roi_heads, transform=None, class_names=None, category_ids=None,
                 keypoint_names=None, keypoint_skeleton=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        from segzoo.models.mask_rcnn.transform import DetectionTransform

        # === Layers ===
        self.backbone = _deserialize(backbone)
        self.fpn = _deserialize(fpn)
        self.rpn = _deserialize(rpn)
        self.roi_heads = _deserialize(roi_heads)
        self.transform = _deserialize(transform) if transform is not None else DetectionTransform()

        # === Config ===
        num_classes = self.roi_heads.num_classes
        if category_ids is not None and len(category_ids) != num_classes:
            raise ValueError(f"category_ids has {len(category_ids)} entries but num_classes={num_classes}")
        self.class_names = resolve_class_names(class_names, num_classes + 1)
        self.category_ids = category_ids  # validated by the contract (None = 1..K)
        self.keypoint_names, self.keypoint_skeleton = resolve_keypoint_metadata(
            self.roi_heads.num_keypoints, keypoint_names, keypoint_skeleton)
        self.seed = seed
        # What generic code (evaluation, predict, export) may ask of an instance model.
        self.has_masks = self.roi_heads.has_masks
        self.has_keypoints = self.roi_heads.has_keypoints
        self.has_mask_scores = self.roi_heads.has_mask_scores
        self.num_keypoints = self.roi_heads.num_keypoints
        # The keypoint decoding resizes each heatmap to its box's size: no XLA.
        if self.has_keypoints:
            self.supports_jit = False
        self.loss_names = RPN_LOSSES + self.roi_heads.loss_names
        self.seed_generator = keras.random.SeedGenerator(seed, name="sampler_seed")
        self.loss_trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", *self.loss_names)}
        self._build_layers()

    # --- what the model is -------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.roi_heads.num_classes

    @property
    def min_size(self) -> int:
        return self.transform.min_size

    @property
    def max_size(self) -> int:
        return self.transform.max_size

    @property
    def max_detections(self) -> int:
        return self.roi_heads.detections_per_image

    @property
    def detection_outputs(self) -> tuple:
        """Keys of the inference dict, in the export's order."""
        names = ("boxes", "scores", "classes") + ("masks",) * self.has_masks
        names += ("mask_scores",) * self.has_mask_scores
        names += ("keypoints", "keypoint_scores") * self.has_keypoints
        return names + ("num_detections",)

    # --- construction --------------------------------------------------------------------
    def _build_layers(self):
        shapes = {key: tuple(value.shape) for key, value in self.backbone.output.items()}
        if not self.fpn.built:
            self.fpn.build(shapes)
        level = (None, None, None, self.fpn.num_channels)
        if not self.rpn.built:
            self.rpn.build(level)
        if not self.roi_heads.built:
            self.roi_heads.build(level)
        self.built = True

    def build(self, input_shape=None):
        self._build_layers()

    # --- shared pieces --------------------------------------------------------------------
    def _features(self, images, training):
        """The FPN pyramid dict {"P2": ..., "P6": ...} and its levels as a list, finest first."""
        pyramid = self.fpn(self.backbone(images, training=training))
        return pyramid, [pyramid[key] for key in sorted(pyramid, key=level_of_name)]

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
        padded, resized_size = self.transform(images)
        pyramid, levels = self._features(padded, training=False)
        padded_shape = (tf.shape(padded)[1], tf.shape(padded)[2])
        rpn = self.rpn(levels, padded_shape, clip_size=resized_size, training=False)
        detections = self.roi_heads.detect(pyramid, rpn["proposals"], rpn["valid"], resized_size)
        valid = detections["valid"]
        # Back to input pixels (per-axis ratios, as torchvision).
        boxes = self.transform.postprocess_boxes(detections["boxes"], resized_size, (height, width))
        outputs = {
            "boxes": tf.where(valid[..., None], boxes, 0.0),
            "scores": detections["scores"],
            "classes": detections["classes"],
        }
        if self.has_masks:
            # The mask head ran on the leading slots valid in some image; the others' masks are zeros.
            probabilities = detections["mask_probabilities"]
            used = tf.shape(probabilities)[1]
            pasted = postprocess.paste_masks(probabilities, outputs["boxes"][:, :used], height, width)
            masks = tf.logical_and(pasted > self.roi_heads.mask_threshold, valid[:, :used, None, None])
            masks = tf.pad(masks, [[0, 0], [0, self.max_detections - used], [0, 0], [0, 0]])
            outputs["masks"] = tf.cast(masks, tf.uint8)
        if self.has_mask_scores:
            outputs["mask_scores"] = detections["mask_scores"]
        if self.has_keypoints:
            keypoints = self.transform.postprocess_keypoints(detections["keypoints"], resized_size,
                                                             (height, width))
            outputs["keypoints"] = tf.where(valid[..., None, None], keypoints, 0.0)
            outputs["keypoint_scores"] = outputs["keypoints"][..., 2]
        outputs["num_detections"] = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
        return outputs

    # --- training -------------------------------------------------------------------------
    def compute_losses(self, images, targets_dict, training=True):
        """The losses `loss_names` (float32 scalars) for a training batch (module docstring)."""
        images = self.transform.pad(images)
        gt_boxes = tf.cast(targets_dict["boxes"], tf.float32)
        gt_valid = tf.cast(targets_dict["classes"], tf.int32) > 0
        image_shape = (tf.shape(images)[1], tf.shape(images)[2])
        pyramid, levels = self._features(images, training=training)
        rpn = self.rpn(levels, image_shape, training=True)
        values = self.rpn.losses_for(rpn, gt_boxes, gt_valid, seed=self.seed_generator)
        values.update(self.roi_heads.compute_losses(pyramid, rpn["proposals"], rpn["valid"], targets_dict,
                                                    seed=self.seed_generator))
        return values

    @property
    def metrics(self):
        return list(self.loss_trackers.values())

    def _update_trackers(self, loss_values, total):
        self.loss_trackers["loss"].update_state(total)
        for name in self.loss_names:
            self.loss_trackers[name].update_state(loss_values[name])
        return {name: tracker.result() for name, tracker in self.loss_trackers.items()}

    def train_step(self, data):
        images, targets_dict = data[0], data[1]
        with tf.GradientTape() as tape:
            loss_values = self.compute_losses(images, targets_dict, training=True)
            total = tf.add_n([loss_values[name] for name in self.loss_names])
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
        total = tf.add_n([loss_values[name] for name in self.loss_names])
        return self._update_trackers(loss_values, total)

    # --- serialisation --------------------------------------------------------------------
    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "class_names": list(self.class_names),
            "category_ids": list(self.category_ids),
            "keypoint_names": list(self.keypoint_names) if self.has_keypoints else None,
            "keypoint_skeleton": [list(p) for p in self.keypoint_skeleton] if self.has_keypoints else None,
            "seed": self.seed,
        }
        for name in ("backbone", "fpn", "rpn", "roi_heads", "transform"):
            config[name] = keras.saving.serialize_keras_object(getattr(self, name))
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
