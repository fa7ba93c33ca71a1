"""The serving module: a `tf.Module` that owns pre- and post-processing around a segzoo model.

The exported graph takes what a client has (uint8 pixels or encoded JPEG/PNG
bytes) and returns final results, so a process that loads the SavedModel needs
only TensorFlow (DESIGN.md "Exported SavedModel"):

    serving_default(images: uint8 [B, H, W, 3] RGB, any B, H, W)
        semantic: labels int32 [B, H, W] (argmax class id),
                  probabilities float32 [B, H, W, K] (softmax of the logits)
        instance: boxes float32 [B, N, 4] ([x1, y1, x2, y2] input pixels),
                  scores float32 [B, N], classes int32 [B, N] (the dataset's
                  original category ids; 0 on padding rows), masks uint8 {0, 1}
                  [B, N, H, W] pasted into the image, num_detections int32 [B];
                  N = max detections, rows >= num_detections are padding.
                  Models with the branches add (and a model without masks,
                  keypoint_rcnn, has no "masks"): mask_scores float32 [B, N]
                  (MS R-CNN: box score x predicted MaskIoU), keypoints float32
                  [B, N, K, 3] ((x, y) input pixels, score) and keypoint_scores
                  float32 [B, N, K]; padding rows are zero.
    serving_bytes(image_bytes: string [B] of JPEG / PNG / BMP / GIF (first frame))
        the same outputs plus image_sizes int32 [B, 2] (each image's H, W).
        Images of one batch may differ in size: each is decoded and run alone
        at its own size (results equal serving_default on that image), and the
        outputs are padded at the bottom/right to the largest H, W of the batch
        (labels with -1, probabilities and masks with 0).
    class_names() -> string [K] (semantic: ids 0..K-1; instance: ids 1..K,
        in the order of the contiguous class ids, see category_ids())
    category_ids() -> int32 [K] (instance: the original id of class k at k-1)

Pixel casting (uint8 -> float32 in [0, 255]) happens here; the model's
`serving_call` (the contract of `segzoo.models.base`) does the rest: RGB ->
grey for one-channel models, U-Net's overlap-tile mirroring for "valid"
padding, normalisation, Mask R-CNN's resize, padding and mask paste-back.
"""

from __future__ import annotations

import tensorflow as tf

IMAGES_SPEC = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
BYTES_SPEC = tf.TensorSpec([None], tf.string, name="image_bytes")
SEMANTIC_OUTPUTS = ("labels", "probabilities")
INSTANCE_OUTPUTS = ("boxes", "scores", "classes", "masks", "num_detections")
# Per-detection outputs of the optional branches, in signature order.
BRANCH_OUTPUTS = ("mask_scores", "keypoints", "keypoint_scores")


def instance_output_names(model) -> tuple:
    """The instance outputs `model` serves: INSTANCE_OUTPUTS, without "masks" for a model
    without a mask branch, plus the BRANCH_OUTPUTS of its branches."""
    names = ("boxes", "scores", "classes") + ("masks",) * bool(model.has_masks)
    names += ("mask_scores",) * bool(model.has_mask_scores)
    names += ("keypoints", "keypoint_scores") * bool(model.has_keypoints)
    return names + ("num_detections",)
# Value the bytes signature pads each output with, beyond an image's own size.
_PAD_VALUES = {"labels": -1}


class ServingModule(tf.Module):
    """Wraps a segzoo model with the export's serving signatures.

    Args:
        model: a segzoo keras.Model (`task` "semantic" or "instance").
        max_detections: instance models: keep at most this many detections
            (the model's best-scoring first rows); None keeps the model's N.
    """

    def __init__(self, model, *, max_detections=None):
        super().__init__(name="segzoo_serving")
        # The Keras model is held untracked: what the SavedModel must own are the
        # tf.Variables its graph reads. Tracking the Keras object instead saves
        # its wrappers, and TFLite's converter then finds the captured variables
        # uninitialised (garbage/NaN outputs); keras' ExportArchive does the same.
        object.__setattr__(self, "model", model)
        self.model_variables = [_tf_variable(v) for v in model.variables]
        self.task = model.task
        if self.task == "semantic" and max_detections is not None:
            raise ValueError("max_detections applies to instance models only; "
                             f"this model is a {self.task} model")
        if max_detections is not None and int(max_detections) < 1:
            raise ValueError(f"max_detections must be >= 1, got {max_detections}")
        # Semantic: K names of ids 0..K-1; instance: K names of classes 1..K.
        names = model.foreground_class_names
        category_ids = model.category_ids
        self.max_detections = None if max_detections is None else int(max_detections)
        self.output_names = (SEMANTIC_OUTPUTS if self.task == "semantic"
                             else instance_output_names(model))
        self.class_name_list = names
        self.category_id_list = [int(c) for c in category_ids]
        self._names = tf.constant(names, tf.string)
        self._ids = tf.constant(self.category_id_list, tf.int32)
        # Class id k (1..K) -> original category id; 0 (padding) stays 0.
        self._id_lookup = tf.constant([0] + self.category_id_list, tf.int32)

    # === Signatures ===
    @tf.function(input_signature=[IMAGES_SPEC])
    def serving_default(self, images):
        return self._predict(images)

    @tf.function(input_signature=[BYTES_SPEC])
    def serving_bytes(self, image_bytes):
        return self._predict_encoded(image_bytes)

    @tf.function(input_signature=[])
    def class_names(self):
        return self._names

    @tf.function(input_signature=[])
    def category_ids(self):
        return self._ids

    # === Pre- and post-processing ===
    def _predict(self, images):
        if self.task == "semantic":
            return self._semantic(images)
        return self._instance(images)

    def _semantic(self, images):
        logits = tf.cast(self.model.serving_call(tf.cast(images, tf.float32)), tf.float32)
        return {
            "labels": tf.argmax(logits, axis=-1, output_type=tf.int32),
            "probabilities": tf.nn.softmax(logits, axis=-1),
        }

    def _instance(self, images):
        outputs = self.model.serving_call(tf.cast(images, tf.float32))
        specs = self._output_specs()
        served = {}
        for name in self.output_names:
            value = tf.cast(outputs[name], specs[name].dtype)
            if self.max_detections is not None and name != "num_detections":
                # Rows are sorted by score, so the first N are the best N.
                value = value[:, : self.max_detections]
            served[name] = value
        if self.max_detections is not None:
            served["num_detections"] = tf.minimum(served["num_detections"], self.max_detections)
        served["classes"] = tf.gather(self._id_lookup, served["classes"])
        return served

    def _predict_encoded(self, image_bytes):
        count = tf.shape(image_bytes)[0]

        def decode(i, decoded, sizes):
            image = tf.io.decode_image(image_bytes[i], channels=3, dtype=tf.uint8,
                                       expand_animations=False)
            image = tf.ensure_shape(image, [None, None, 3])
            return i + 1, decoded.write(i, image), sizes.write(i, tf.shape(image)[:2])

        _, decoded, sizes = tf.while_loop(
            lambda i, *_: i < count, decode,
            (tf.constant(0),
             tf.TensorArray(tf.uint8, size=count, infer_shape=False,
                            element_shape=tf.TensorShape([None, None, 3])),
             tf.TensorArray(tf.int32, size=count, element_shape=tf.TensorShape([2]))))
        sizes = sizes.stack()
        max_size = tf.maximum(tf.reduce_max(sizes, axis=0), 0)

        names = self.output_names
        specs = self._output_specs()

        def run_one(i, arrays):
            image = decoded.read(i)
            outputs = self._predict(image[tf.newaxis])
            size = tf.shape(image)[:2]
            return i + 1, tuple(
                array.write(i, self._pad_to(outputs[name][0], name, size, max_size))
                for name, array in zip(names, arrays, strict=True))

        _, arrays = tf.while_loop(
            lambda i, _: i < count, run_one,
            (tf.constant(0),
             tuple(tf.TensorArray(specs[name].dtype, size=count, infer_shape=False,
                                  element_shape=specs[name].shape[1:]) for name in names)))
        stacked = {name: array.stack() for name, array in zip(names, arrays, strict=True)}
        stacked["image_sizes"] = sizes
        return stacked

    def _output_specs(self):
        k = len(self.class_name_list)
        if self.task == "semantic":
            return {"labels": tf.TensorSpec([None, None, None], tf.int32),
                    "probabilities": tf.TensorSpec([None, None, None, k], tf.float32)}
        num_keypoints = self.model.num_keypoints
        return {"boxes": tf.TensorSpec([None, None, 4], tf.float32),
                "scores": tf.TensorSpec([None, None], tf.float32),
                "classes": tf.TensorSpec([None, None], tf.int32),
                "masks": tf.TensorSpec([None, None, None, None], tf.uint8),
                "num_detections": tf.TensorSpec([None], tf.int32),
                "mask_scores": tf.TensorSpec([None, None], tf.float32),
                "keypoints": tf.TensorSpec([None, None, num_keypoints, 3], tf.float32),
                "keypoint_scores": tf.TensorSpec([None, None, num_keypoints], tf.float32)}

    @staticmethod
    def _pad_to(value, name, size, max_size):
        """Pads one image's output (no batch axis) to `max_size` [H, W] at the bottom/right."""
        extra = max_size - size  # [2]
        if name in ("labels", "probabilities"):  # [H, W] / [H, W, K]
            spatial = 0
        elif name == "masks":  # [N, H, W]
            spatial = 1
        else:
            return value
        rank = len(value.shape)
        paddings = [[0, 0]] * rank
        paddings[spatial] = [0, extra[0]]
        paddings[spatial + 1] = [0, extra[1]]
        return tf.pad(value, paddings, constant_values=_PAD_VALUES.get(name, 0))

    def signatures(self, names=("serving_default", "serving_bytes")) -> dict:
        """Traces the functions `names`; returns the concrete functions to save as signatures.

        Also tracks any variable the traced graphs capture beyond `model.variables`.
        """
        traced = {"serving_default": self.serving_default, "serving_bytes": self.serving_bytes}
        functions = {name: traced[name].get_concrete_function() for name in names}
        known = {id(v) for v in self.model_variables}
        self.captured_variables = [
            v for function in functions.values() for v in function.variables
            if id(v) not in known]
        return functions


def _tf_variable(variable):
    """The tf.Variable behind a Keras 3 variable (the TensorFlow backend wraps one)."""
    import keras

    value = variable.value if isinstance(variable, keras.Variable) else variable
    return value if isinstance(value, tf.Variable) else variable
