"""U-Net (Ronneberger, Fischer, Brox 2015).

Contracting path: four times [two 3x3 convs + ReLU, 2x2 max pool], filters
64, 128, 256, 512 (`base_filters` times 1, 2, 4, 8), then two 3x3 convs with
1024. Expanding path: four times [2x2 up-convolution (stride-2 transposed
conv) halving the filters, crop-and-concat with the encoder map of the same
level, two 3x3 convs + ReLU], then a 1x1 conv to K classes.

`padding="valid"` is the paper's net: unpadded convolutions, so the output is
*smaller* than the input (572x572 -> 388x388; each output pixel sees its full
context) and the encoder maps are centre-cropped before concatenation. With
1 input channel and 2 classes it has exactly 31,030,658 parameters. Sizes
`16 * b + 124` (b >= 4; 572 has b = 28) tile exactly and give `size - 184`;
other sizes work while every map stays positive (pooling floors odd sizes).
`valid_tiling(depth)` derives these numbers from the depth; `UNet.serving_call`
(what inference and the export run) mirror-pads the image by them, the paper's
overlap-tile strategy, so a valid U-Net's served output covers its input.

`padding="same"` (default) uses zero-padded convolutions; the input is padded
inside the model (zeros after normalisation, bottom/right) to a multiple of
16 and the logits are cropped back, so the output has the input's size for
any H, W.
"""

from __future__ import annotations

import dataclasses

import keras

from segzoo.blocks.crop import CropToReference
from segzoo.models.base import InputSpec, SegmentationModel, positive_int, resolve_class_names
from segzoo.registry import register_model

DEPTH = 4  # number of 2x2 poolings: H, W are padded to a multiple of 2 ** DEPTH


@dataclasses.dataclass(frozen=True)
class ValidTiling:
    """Geometry of a "valid" U-Net (two unpadded 3x3 convs a level, 2x2 pools and up-convs).

    An input of `multiple * b + offset` pixels (b >= `min_blocks`) passes every
    pooling without flooring and gives an output `2 * margin` pixels smaller:
    the centre of the input, `margin` pixels of context on each side.
    """

    multiple: int
    offset: int
    margin: int
    min_blocks: int


def valid_tiling(depth: int = DEPTH) -> ValidTiling:
    """`ValidTiling` of a valid U-Net with `depth` poolings (depth 4: 16 * b + 124 -> -184).

    With n = 2**depth and s the size entering the bottom block: the input is
    n * s + 4 (n - 1) (each level loses 4 pixels before its pool), the output
    n * s - 8 n + 4 (the bottom block and each level on the way up lose 4).
    With b = s - 4 (the bottom block's output): input n * b + 8 n - 4, loss 12 n - 8,
    output n * b - 4 n + 4, positive for b > 4 - 4 / n (b >= 4 from depth 2 on).
    """
    n = 2 ** int(depth)
    return ValidTiling(multiple=n, offset=8 * n - 4, margin=(12 * n - 8) // 2,
                       min_blocks=5 - -(-4 // n))


def mirror_pad_for_valid(pixels, tiling: ValidTiling):
    """Mirror-pads [B, H, W, C] so a valid U-Net's output covers [0, H) x [0, W).

    Top/left get the `margin`; bottom/right enough to reach the next tileable
    size `multiple * b + offset >= H + 2 * margin`. Mirroring (SYMMETRIC,
    repeated for images smaller than the margin) is the paper's overlap-tile strategy.
    """
    import tensorflow as tf

    shape = tf.shape(pixels)
    m, margin = tiling.multiple, tiling.margin

    def target(size):
        blocks = tf.maximum((size + 2 * margin - tiling.offset + m - 1) // m, tiling.min_blocks)
        return blocks * m + tiling.offset

    margin_t = tf.constant(margin)
    remaining = tf.stack([margin_t, target(shape[1]) - shape[1] - margin_t,
                          margin_t, target(shape[2]) - shape[2] - margin_t])

    def body(x, remaining):
        size = tf.shape(x)
        limit = tf.stack([size[1], size[1], size[2], size[2]])
        step = tf.minimum(remaining, limit)
        x = tf.pad(x, [[0, 0], [step[0], step[1]], [step[2], step[3]], [0, 0]], mode="SYMMETRIC")
        return x, remaining - step

    padded, _ = tf.while_loop(
        lambda x, remaining: tf.reduce_any(remaining > 0), body, (pixels, remaining),
        shape_invariants=(tf.TensorShape([None, None, None, pixels.shape[-1]]),
                          tf.TensorShape([4])))
    return padded


@keras.saving.register_keras_serializable(package="segzoo")
class PadToMultiple(keras.layers.Layer):
    """Zero-pads H and W at the bottom/right up to a multiple of `multiple`.

    Call: x [B, H, W, C] -> [B, ceil(H / m) * m, ceil(W / m) * m, C], same dtype.
    """

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, inputs):
        shape = keras.ops.shape(inputs)
        m = self.multiple
        # (m - n % m) % m, not (-n) % m: ONNX (tf2onnx) turns FloorMod of a negative
        # operand into a truncating remainder, so only non-negative operands are used.
        pad_h = (m - shape[1] % m) % m
        pad_w = (m - shape[2] % m) % m
        padded = keras.ops.pad(inputs, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
        # The reshape changes no value; it keeps TFLite's converter from folding a
        # data-dependent Pad into the next Conv2D (which it then cannot convert).
        return keras.ops.reshape(
            padded, (shape[0], shape[1] + pad_h, shape[2] + pad_w, shape[3]))

    def compute_output_shape(self, input_shape):
        def size(n):
            return None if n is None else -(-n // self.multiple) * self.multiple

        return (input_shape[0], size(input_shape[1]), size(input_shape[2]), input_shape[3])

    def get_config(self):
        config = super().get_config()
        config["multiple"] = self.multiple
        return config


@keras.saving.register_keras_serializable(package="segzoo")
class UNet(SegmentationModel, keras.Model):
    """U-Net for semantic segmentation.

    Args:
        num_classes: K, including background.
        class_names: K names (None -> "class_0", ...).
        padding: "same" (output size == input size, any input) or "valid"
            (the paper: output smaller than the input, 572 -> 388).
        base_filters: filters of the first level (64 in the paper); level i
            has `base_filters * 2**i`.
        input_channels: channels of the input images (1 in the paper, 3 for RGB).
        batch_norm: BatchNormalization after every 3x3 conv (convs then have no
            bias). False is the paper.
    Call:
        images float32 [B, H, W, input_channels] in [0, 255]; scaled to [-1, 1]
        inside the model.
    Returns:
        logits float32 [B, H', W', K]: H' = H for "same"; for "valid" the
        centre part (572 -> 388: the input's centre crop by 92 pixels a side).
    """

    task = "semantic"
    class_dependent_layers = ("logits",)

    def __init__(self, num_classes=2, class_names=None, padding="same", base_filters=64,
                 input_channels=3, batch_norm=False, **kwargs):
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        num_classes = positive_int("num_classes", num_classes)
        base_filters = positive_int("base_filters", base_filters)
        input_channels = positive_int("input_channels", input_channels)
        class_names = resolve_class_names(class_names, num_classes)

        def conv_block(x, filters, name):
            for i in (1, 2):
                x = keras.layers.Conv2D(filters, 3, padding=padding, use_bias=not batch_norm,
                                        kernel_initializer="he_normal", name=f"{name}_conv{i}")(x)
                if batch_norm:
                    x = keras.layers.BatchNormalization(name=f"{name}_bn{i}")(x)
                x = keras.layers.ReLU(name=f"{name}_relu{i}")(x)
            return x

        # === Functional Model ===
        images = keras.Input(shape=(None, None, input_channels), name="images")
        x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="normalize")(images)
        if padding == "same":
            x = PadToMultiple(2**DEPTH, name="pad")(x)
        skips = []
        for level in range(DEPTH):
            x = conv_block(x, base_filters * 2**level, f"down{level + 1}")
            skips.append(x)
            x = keras.layers.MaxPooling2D(2, name=f"pool{level + 1}")(x)
        x = conv_block(x, base_filters * 2**DEPTH, "bottom")
        for level in reversed(range(DEPTH)):
            x = keras.layers.Conv2DTranspose(base_filters * 2**level, 2, strides=2,
                                             name=f"upconv{level + 1}")(x)
            skip = skips[level]
            if padding == "valid":
                skip = CropToReference("center", name=f"crop{level + 1}")(skip, x)
            x = keras.layers.Concatenate(name=f"concat{level + 1}")([skip, x])
            x = conv_block(x, base_filters * 2**level, f"up{level + 1}")
        # float32 logits also under mixed precision.
        x = keras.layers.Conv2D(num_classes, 1, name="logits", dtype="float32")(x)
        if padding == "same":
            x = CropToReference(0, name="crop_to_input", dtype="float32")(x, images)
        super().__init__(inputs=images, outputs=x, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.class_names = class_names
        self.padding = padding
        self.base_filters = base_filters
        self.input_channels = input_channels
        self.batch_norm = bool(batch_norm)

    # === Contract ===
    @property
    def training_input_spec(self) -> InputSpec:
        return InputSpec(channels=self.input_channels)

    def serving_call(self, pixels):
        """Logits [B, H, W, K] for RGB pixels [B, H, W, 3]: grey for one channel; a valid
        U-Net runs on the mirror-padded image (`mirror_pad_for_valid`), cropped back."""
        if self.padding != "valid":
            return super().serving_call(pixels)
        import tensorflow as tf

        size = tf.shape(pixels)
        if self.input_channels == 1:
            pixels = tf.image.rgb_to_grayscale(pixels)
        logits = self(mirror_pad_for_valid(pixels, valid_tiling(DEPTH)), training=False)
        return logits[:, : size[1], : size[2]]

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "padding": self.padding,
            "base_filters": self.base_filters,
            "input_channels": self.input_channels,
            "batch_norm": self.batch_norm,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@register_model("unet", task="semantic", default_kwargs={},
                description="U-Net, Ronneberger et al. 2015 (padding='valid' is the paper's net)")
def unet(num_classes=2, **kwargs) -> UNet:
    """U-Net; `unet(num_classes=2, padding="valid", input_channels=1)` is the paper's net."""
    kwargs.setdefault("name", "unet")
    return UNet(num_classes=num_classes, **kwargs)
