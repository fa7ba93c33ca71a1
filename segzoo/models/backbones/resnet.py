"""ResNet-18/34/50/101/152 backbones returning the pyramid ``{"C2", .., "C5"}``.

One builder, two layouts (``layout=``):

- ``"keras"``: exactly ``keras.applications.ResNet50/101/152`` (include_top
  False): stride in the first 1x1 conv of a bottleneck, convs with bias, BN
  epsilon 1.001e-5, and the same layer names (``conv1_conv``,
  ``conv2_block1_1_conv``, ``conv2_block1_0_bn``, ...), so Keras' ImageNet
  files load by name. Preprocessing: Keras' "caffe" mode (RGB -> BGR, minus
  the ImageNet BGR mean [103.939, 116.779, 123.68]).
- ``"torchvision"``: torchvision's ResNet v1.5: stride in the 3x3 conv,
  convs without bias, BN epsilon 1e-5 (momentum 0.1 in torch = 0.9 here),
  explicit ``ZeroPadding2D`` before every stride-2 conv and "valid" padding
  (TF's "same" pads stride-2 convs asymmetrically, torch pads 1 on every
  side). Preprocessing: ``/255`` then ImageNet mean [0.485, 0.456, 0.406] /
  std [0.229, 0.224, 0.225]. Names are the Keras ones; torchvision's names map
  as ``conv1 -> conv1_conv``, ``bn1 -> conv1_bn``,
  ``layer{s}.{b}.conv{i} -> conv{s+1}_block{b+1}_{i}_conv``,
  ``.bn{i} -> _{i}_bn``, ``.downsample.0/1 -> _0_conv/_0_bn``.

ResNet-18/34 use basic blocks (two 3x3 convs, stride in the first, which is
explicitly padded in both layouts; a 1x1 projection shortcut where the shape
changes), as torchvision; Keras has no such models, so no Keras weights.

Inputs are float32 RGB images in [0, 255], [B, H, W, 3], any H, W; the
preprocessing is inside. Level ``C_l`` has stride ``2**l``; every stride-2
step maps a side n to ``ceil(n / 2)`` (in both layouts), so C5 of a 65-pixel
side has ``ceil(65 / 32) = 3`` pixels.

Weight files (Keras' ImageNet files, .h5 / .weights.h5 / .keras) are read by
`segzoo.models.backbones.resnet_weights`; the input normalisation layer is
`segzoo.models.backbones.preprocessing.ImageNormalization`.

``freeze_batchnorm=True`` uses `FrozenBatchNormalization` (torchvision's
FrozenBatchNorm2d: always inference statistics, never trainable), as
Mask R-CNN does. `set_trainable_stages` freezes by stage for
``--trainable-layers heads | 2+ | 3+ | 4+ | 5+ | all``.
"""

from __future__ import annotations

import keras

from segzoo.models.backbones.preprocessing import ImageNormalization
from segzoo.models.backbones.resnet_weights import imagenet_weights_path, load_resnet_weights

__all__ = [
    "STAGES",
    "FrozenBatchNormalization",
    "ImageNormalization",
    "ResNetBackbone",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "imagenet_weights_path",
    "load_resnet_weights",
    "resnet_backbone",
    "set_trainable_stages",
    "stage_of_layer",
]

# depth -> (block type, blocks per stage conv2..conv5)
_ARCHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
_LAYOUTS = ("keras", "torchvision")
# Stage names in order; stage index 1 is the stem (conv1 + pool1), k the conv{k} stage.
STAGES = ("stem", "conv2", "conv3", "conv4", "conv5")
_PREPROCESSING = {"keras": "caffe", "torchvision": "torch"}


@keras.saving.register_keras_serializable(package="segzoo")
class FrozenBatchNormalization(keras.layers.BatchNormalization):
    """Batch norm with fixed statistics and affine parameters.

    Always normalises with the moving statistics (``training`` is ignored) and
    is never trainable: setting ``trainable = True`` (directly or through a
    parent model) has no effect. The weights are the usual gamma, beta,
    moving_mean, moving_variance, so BN weight files load unchanged.
    """

    def __init__(self, **kwargs):
        kwargs["trainable"] = False
        super().__init__(**kwargs)

    @property
    def trainable(self):
        return False

    @trainable.setter
    def trainable(self, value):
        keras.layers.Layer.trainable.fset(self, False)

    def build(self, input_shape):
        super().build(input_shape)
        keras.layers.Layer.trainable.fset(self, False)

    def call(self, inputs, training=None, mask=None):
        return super().call(inputs, training=False, mask=mask)


def stage_of_layer(name):
    """Stage index of a backbone layer name: 1 stem, 2..5 conv2..conv5, 0 other."""
    if name.startswith(("conv1_", "pool1_")):
        return 1
    for stage in (2, 3, 4, 5):
        if name.startswith(f"conv{stage}_"):
            return stage
    return 0


_TRAINABLE_SPECS = {"heads": 6, "5+": 5, "4+": 4, "3+": 3, "2+": 2, "all": 1}


def set_trainable_stages(backbone, spec):
    """Freezes the backbone stages below `spec` (``--trainable-layers``).

    Args:
        backbone: a `ResNetBackbone` (or any model with its layer names).
        spec: "heads" (whole backbone frozen), "5+", "4+", "3+", "2+"
            (conv{k} and later trainable, earlier stages and the stem frozen;
            Mask R-CNN's "3+" trains conv3..conv5), or "all".
    Frozen batch-norm layers stay frozen whatever the spec. Recompile (or
    rebuild the train function) after changing it on a compiled model.
    Returns:
        the backbone.
    """
    if spec not in _TRAINABLE_SPECS:
        raise ValueError(
            f"trainable stages spec must be one of {list(_TRAINABLE_SPECS)}; received {spec!r}."
        )
    first = _TRAINABLE_SPECS[spec]
    for layer in backbone.layers:
        stage = stage_of_layer(layer.name)
        if stage:
            layer.trainable = stage >= first
    if isinstance(backbone, ResNetBackbone):
        backbone.trainable_stages = spec
    return backbone


class _Builder:
    """Adds the layers of one layout; keeps the layer arguments in one place."""

    def __init__(self, layout, freeze_batchnorm):
        self.torch = layout == "torchvision"
        self.bn_cls = FrozenBatchNormalization if freeze_batchnorm else keras.layers.BatchNormalization
        self.epsilon = 1e-5 if self.torch else 1.001e-5
        self.momentum = 0.9 if self.torch else 0.99

    def conv(self, x, filters, kernel_size, stride, name):
        padding = "same" if kernel_size > 1 and stride == 1 else "valid"
        if kernel_size > 1 and stride > 1:
            pad = kernel_size // 2
            x = keras.layers.ZeroPadding2D(pad, name=name.replace("_conv", "_pad"))(x)
        return keras.layers.Conv2D(
            filters, kernel_size, strides=stride, padding=padding,
            use_bias=not self.torch, name=name)(x)

    def bn(self, x, name):
        return self.bn_cls(axis=-1, epsilon=self.epsilon, momentum=self.momentum, name=name)(x)

    def stem(self, x):
        x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(x)
        x = keras.layers.Conv2D(64, 7, strides=2, use_bias=not self.torch, name="conv1_conv")(x)
        x = self.bn(x, "conv1_bn")
        x = keras.layers.Activation("relu", name="conv1_relu")(x)
        # Zero padding equals torch's -inf padding here: the input is >= 0 after ReLU.
        x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
        return keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)

    def bottleneck(self, x, filters, stride, shortcut_conv, name):
        if shortcut_conv:
            shortcut = self.conv(x, 4 * filters, 1, stride, f"{name}_0_conv")
            shortcut = self.bn(shortcut, f"{name}_0_bn")
        else:
            shortcut = x
        stride_1x1, stride_3x3 = (1, stride) if self.torch else (stride, 1)
        x = self.conv(x, filters, 1, stride_1x1, f"{name}_1_conv")
        x = self.bn(x, f"{name}_1_bn")
        x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
        x = self.conv(x, filters, 3, stride_3x3, f"{name}_2_conv")
        x = self.bn(x, f"{name}_2_bn")
        x = keras.layers.Activation("relu", name=f"{name}_2_relu")(x)
        x = self.conv(x, 4 * filters, 1, 1, f"{name}_3_conv")
        x = self.bn(x, f"{name}_3_bn")
        x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
        return keras.layers.Activation("relu", name=f"{name}_out")(x)

    def basic(self, x, filters, stride, shortcut_conv, name):
        if shortcut_conv:
            shortcut = self.conv(x, filters, 1, stride, f"{name}_0_conv")
            shortcut = self.bn(shortcut, f"{name}_0_bn")
        else:
            shortcut = x
        x = self.conv(x, filters, 3, stride, f"{name}_1_conv")
        x = self.bn(x, f"{name}_1_bn")
        x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
        x = self.conv(x, filters, 3, 1, f"{name}_2_conv")
        x = self.bn(x, f"{name}_2_bn")
        x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
        return keras.layers.Activation("relu", name=f"{name}_out")(x)


@keras.saving.register_keras_serializable(package="segzoo")
class ResNetBackbone(keras.Model):
    """Functional ResNet feature extractor: images -> ``{"C2", "C3", "C4", "C5"}``.

    Args:
        depth: 18, 34, 50, 101 or 152.
        layout: "keras" (keras.applications, ImageNet weights load by name) or
            "torchvision" (ResNet v1.5 layout; see the module docstring).
        freeze_batchnorm: `FrozenBatchNormalization` instead of trainable BN.
        preprocessing: "auto" (the layout's own: "caffe" for keras, "torch"
            for torchvision), "caffe", "torch", or None (inputs already normalised).
        trainable_stages: `set_trainable_stages` spec applied after building
            ("all" by default).
        input_shape: (H, W, 3); None sides accept any size.

    Call:
        images float32 [B, H, W, 3], RGB in [0, 255].
    Returns:
        dict ``{"C2": [B, ceil(H/4), ceil(W/4), c2], "C3": ../8, "C4": ../16,
        "C5": ../32}``; channels (c2..c5) = 64, 128, 256, 512 (basic blocks) or
        256, 512, 1024, 2048 (bottlenecks), see `out_channels`.
    Load weights with `resnet_backbone(..., weights=...)` or `load_resnet_weights`.
    """

    def __init__(
        self,
        depth=50,
        layout="keras",
        freeze_batchnorm=False,
        preprocessing="auto",
        trainable_stages="all",
        input_shape=(None, None, 3),
        name=None,
        **kwargs,
    ):
        if depth not in _ARCHS:
            raise ValueError(f"`depth` must be one of {sorted(_ARCHS)}; received {depth!r}.")
        if layout not in _LAYOUTS:
            raise ValueError(f"`layout` must be one of {_LAYOUTS}; received {layout!r}.")
        mode = _PREPROCESSING[layout] if preprocessing == "auto" else preprocessing
        if mode not in ("caffe", "torch", None):
            raise ValueError(
                "`preprocessing` must be 'auto', 'caffe', 'torch' or None; "
                f"received {preprocessing!r}."
            )
        block_type, blocks = _ARCHS[depth]

        # === Functional Model ===
        builder = _Builder(layout, freeze_batchnorm)
        images = keras.Input(shape=tuple(input_shape), name="images")
        x = images if mode is None else ImageNormalization(mode, name="preprocess")(images)
        x = builder.stem(x)
        pyramid = {}
        for stage, (filters, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
            level = stage + 2
            for block in range(1, count + 1):
                stride = 2 if block == 1 and level > 2 else 1
                prefix = f"conv{level}_block{block}"
                if block_type == "bottleneck":
                    x = builder.bottleneck(x, filters, stride, block == 1, prefix)
                else:
                    x = builder.basic(x, filters, stride, block == 1 and level > 2, prefix)
            pyramid[f"C{level}"] = x
        super().__init__(inputs=images, outputs=pyramid, name=name or f"resnet{depth}", **kwargs)

        # === Config ===
        self.depth = depth
        self.layout = layout
        self.freeze_batchnorm = bool(freeze_batchnorm)
        self.preprocessing = preprocessing
        self.input_shape_arg = tuple(input_shape)
        self.out_channels = {k: int(v.shape[-1]) for k, v in pyramid.items()}
        self.trainable_stages = "all"
        set_trainable_stages(self, trainable_stages)

    def get_config(self):
        return {
            "depth": self.depth,
            "layout": self.layout,
            "freeze_batchnorm": self.freeze_batchnorm,
            "preprocessing": self.preprocessing,
            "trainable_stages": self.trainable_stages,
            "input_shape": self.input_shape_arg,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def resnet_backbone(depth=50, weights=None, **kwargs):
    """Builds a `ResNetBackbone` and loads `weights`.

    Args:
        depth: 18, 34, 50, 101, 152.
        weights: None (random init), "imagenet" (Keras' ImageNet file for
            depth 50/101/152, keras layout only: taken from the Keras cache
            ``~/.keras/models/resnet{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5``
            when present, else downloaded), or a path to a Keras weights file
            (.h5 / .weights.h5 / .keras) whose layers carry our names.
        **kwargs: `ResNetBackbone` arguments (layout, freeze_batchnorm, ...).
    Raises:
        ValueError / FileNotFoundError naming the file and where to put it.
    """
    backbone = ResNetBackbone(depth=depth, **kwargs)
    if weights is not None:
        load_resnet_weights(backbone, weights)
    return backbone


def resnet18(weights=None, **kwargs):
    """ResNet-18 (basic blocks), see `resnet_backbone`."""
    return resnet_backbone(18, weights, **kwargs)


def resnet34(weights=None, **kwargs):
    """ResNet-34 (basic blocks), see `resnet_backbone`."""
    return resnet_backbone(34, weights, **kwargs)


def resnet50(weights=None, **kwargs):
    """ResNet-50 (bottlenecks; keras.applications.ResNet50 layout by default)."""
    return resnet_backbone(50, weights, **kwargs)


def resnet101(weights=None, **kwargs):
    """ResNet-101 (bottlenecks; keras.applications.ResNet101 layout by default)."""
    return resnet_backbone(101, weights, **kwargs)


def resnet152(weights=None, **kwargs):
    """ResNet-152 (bottlenecks; keras.applications.ResNet152 layout by default)."""
    return resnet_backbone(152, weights, **kwargs)
