"""FCN-32s / FCN-16s / FCN-8s (Long, Shelhamer, Darrell 2015), as the Caffe reference nets.

Layout of `voc-fcn{32,16,8}s/net.py` (shelhamer/fcn.berkeleyvision.org):

    data -> VGG16 with conv1_1 pad 100 -> pool3 (1/8), pool4 (1/16), pool5 (1/32)
    fc6 7x7 4096 -> ReLU -> dropout -> fc7 1x1 4096 -> ReLU -> dropout
    score_fr 1x1 K (zero-initialised)
    32s: upscore (deconv 64/32)                     -> crop(data, 19)
    16s: upscore2 (4/2) + crop(score_pool4, 5)      -> upscore16 (32/16) -> crop(data, 27)
    8s:  upscore2 (4/2) + crop(score_pool4, 5)      -> upscore_pool4 (4/2)
         + crop(score_pool3, 9)                     -> upscore8 (16/8)   -> crop(data, 31)

The deconvolutions are bias-free `Upsample2D(full_output=True)` layers
(Caffe's Deconvolution geometry), bilinear-initialised and frozen by default;
the crop offsets make the output exactly aligned with the input for any H, W
(the 100-pixel pad guarantees the crops fit). The other `upsampling=` modes
keep the same geometry (see `segzoo.blocks.upsample`). `at_once=True` is
`voc-fcn8s-atonce`: pool4 and pool3 are scaled by 0.01 and 0.0001 before their
score layers.

Parameters with 21 classes, frozen upsamplers included: FCN-32s 136,152,917;
FCN-16s 134,815,994; FCN-8s 134,489,759.
"""

from __future__ import annotations

import keras

from segzoo.blocks.crop import CropToReference
from segzoo.blocks.upsample import MODES, Upsample2D
from segzoo.models.backbones.preprocessing import ImageNormalization
from segzoo.models.backbones.vgg import load_vgg16_weights, vgg16_features
from segzoo.models.base import SegmentationModel, positive_int, resolve_class_names
from segzoo.registry import register_model

SKIPS = ("pool4", "pool3")
# Caffe crop offsets: skip name -> offset of its score crop; final crop per variant.
_SKIP_OFFSETS = {"pool4": 5, "pool3": 9}
_FINAL = {0: ("upscore", 32, 19), 1: ("upscore16", 16, 27), 2: ("upscore8", 8, 31)}
_AT_ONCE_SCALES = {"pool4": 0.01, "pool3": 0.0001}


@keras.saving.register_keras_serializable(package="segzoo")
class Scale(keras.layers.Layer):
    """Multiplies by a fixed constant (Caffe's frozen `Scale` of fcn8s-atonce). No weights."""

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs):
        return inputs * keras.ops.cast(self.scale, inputs.dtype)

    def get_config(self):
        config = super().get_config()
        config["scale"] = self.scale
        return config


@keras.saving.register_keras_serializable(package="segzoo")
class FCN(SegmentationModel, keras.Model):
    """Fully convolutional network on VGG16 (FCN-32s, -16s or -8s by `skips`).

    Args:
        skips: () for FCN-32s, ("pool4",) for FCN-16s, ("pool4", "pool3") for FCN-8s.
        num_classes: K, including background.
        class_names: K names (None -> "class_0", ...).
        backbone_weights: None (random init), "imagenet" (Keras cache or
            download; fc6/fc7 too when the include_top file is cached) or a path
            to a Keras VGG16 .h5 file. Used at construction only; `from_config`
            keeps it in the config but does not load it (a loaded model has its
            saved weights).
        upsampling: "bilinear_transposed" (the paper), "transposed", "bilinear",
            "nearest", for every upsampler.
        learnable_upsampling: trains the bilinear-initialised upsamplers.
        at_once: scales pool4 by 0.01 and pool3 by 0.0001 before scoring (fcn8s-atonce).
        dropout_rate: dropout after fc6 and fc7.
        base_filters: VGG16 block-1 channels (64 = the paper; every block scales
            with it). Narrow nets (8) let `segzoo ablate fcn` train on a CPU in
            minutes; ImageNet weights need 64.
        fc_channels: fc6 / fc7 channels (4096 = the paper).
        preprocessing_mean: None (the Caffe ImageNet mean (103.939, 116.779,
            123.68)) or the BGR mean, in grey levels, subtracted after RGB -> BGR
            (the FCN authors' nets: (104.00698793, 116.66876762, 122.67891434),
            set by `segzoo convert --from caffe`).
    Call:
        images float32 [B, H, W, 3] RGB in [0, 255], any H, W >= 1.
    Returns:
        logits float32 [B, H, W, K], pixel (i, j) aligned with input pixel (i, j).
    """

    task = "semantic"
    # Layers whose weights depend on the class count: skipped when staged
    # training (`load_weights_by_name`) moves weights between class counts.
    class_dependent_layers = (
        "score_fr", "score_pool4", "score_pool3",
        "upscore", "upscore2", "upscore16", "upscore_pool4", "upscore8",
    )

    def __init__(self, skips=(), num_classes=21, class_names=None, backbone_weights=None,
                 upsampling="bilinear_transposed", learnable_upsampling=False, at_once=False,
                 dropout_rate=0.5, base_filters=64, fc_channels=4096, preprocessing_mean=None, **kwargs):
        skips = tuple(skips)
        if skips not in ((), SKIPS[:1], SKIPS):
            raise ValueError(f"skips must be (), ('pool4',) or ('pool4', 'pool3'), got {skips!r}")
        if upsampling not in MODES:
            raise ValueError(f"upsampling must be one of {MODES}, got {upsampling!r}")
        num_classes = positive_int("num_classes", num_classes)
        class_names = resolve_class_names(class_names, num_classes)
        base_filters = positive_int("base_filters", base_filters)
        fc_channels = positive_int("fc_channels", fc_channels)
        if base_filters % 8:
            raise ValueError(f"base_filters must be a multiple of 8, got {base_filters}")
        if backbone_weights is not None and (base_filters, fc_channels) != (64, 4096):
            raise ValueError(
                f"backbone_weights={backbone_weights!r} needs the VGG16 widths (base_filters=64, "
                f"fc_channels=4096), got base_filters={base_filters}, fc_channels={fc_channels}; "
                "train narrow nets from scratch (backbone_weights=None)")

        def upsample(x, factor, name):
            return Upsample2D(factor, upsampling, learnable=learnable_upsampling,
                              full_output=True, name=name)(x)

        def score(x, name):
            return keras.layers.Conv2D(num_classes, 1, kernel_initializer="zeros",
                                       name=name)(x)

        # === Functional Model ===
        images = keras.Input(shape=(None, None, 3), name="images")
        normalize = ImageNormalization("caffe", mean=preprocessing_mean, name="preprocess")
        features = vgg16_features(normalize(images), pad=100,
                                  include_fc=True, dropout_rate=dropout_rate,
                                  base_filters=base_filters, fc_channels=fc_channels)
        x = score(features["fc7"], "score_fr")
        upscore_names = {"pool4": "upscore2", "pool3": "upscore_pool4"}
        for skip in skips:
            x = upsample(x, 2, upscore_names[skip])
            pool = features[skip]
            if at_once:
                pool = Scale(_AT_ONCE_SCALES[skip], name=f"scale_{skip}")(pool)
            skip_score = CropToReference(_SKIP_OFFSETS[skip], name=f"score_{skip}c")(
                score(pool, f"score_{skip}"), x
            )
            x = keras.layers.Add(name=f"fuse_{skip}")([x, skip_score])
        name, factor, offset = _FINAL[len(skips)]
        x = upsample(x, factor, name)
        # float32 logits also under mixed precision.
        logits = CropToReference(offset, name="score", dtype="float32")(x, images)
        super().__init__(inputs=images, outputs=logits, **kwargs)

        # === Config ===
        self.skips = skips
        self.num_classes = num_classes
        self.class_names = class_names
        self.backbone_weights = backbone_weights
        self.upsampling = upsampling
        self.learnable_upsampling = bool(learnable_upsampling)
        self.at_once = bool(at_once)
        self.dropout_rate = float(dropout_rate)
        self.base_filters = base_filters
        self.fc_channels = fc_channels
        self.preprocessing_mean = None if preprocessing_mean is None else list(normalize.mean)
        if backbone_weights is not None:
            load_vgg16_weights(self, backbone_weights)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "skips": list(self.skips),
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "backbone_weights": self.backbone_weights,
            "upsampling": self.upsampling,
            "learnable_upsampling": self.learnable_upsampling,
            "at_once": self.at_once,
            "dropout_rate": self.dropout_rate,
            "base_filters": self.base_filters,
            "fc_channels": self.fc_channels,
            "preprocessing_mean": self.preprocessing_mean,
        }

    @classmethod
    def from_config(cls, config):
        # The saved weights replace the backbone's: do not fetch them again, but keep the
        # argument in the config.
        model = cls(**{**config, "backbone_weights": None})
        model.backbone_weights = config.get("backbone_weights")
        return model


def _fcn(skips, name, num_classes=21, **kwargs) -> FCN:
    kwargs.setdefault("name", name)
    return FCN(skips=skips, num_classes=num_classes, **kwargs)


@register_model("fcn32s", task="semantic", default_kwargs={},
                description="FCN-32s, VGG16, Long et al. 2015 (Caffe reference net)")
def fcn32s(num_classes=21, **kwargs) -> FCN:
    """FCN-32s: score_fr upsampled 32x in one step (kernel 64, stride 32), crop 19."""
    return _fcn((), "fcn32s", num_classes, **kwargs)


@register_model("fcn16s", task="semantic", default_kwargs={},
                description="FCN-16s, VGG16 + pool4 skip, Long et al. 2015")
def fcn16s(num_classes=21, **kwargs) -> FCN:
    """FCN-16s: 2x score_fr + pool4 scores, upsampled 16x; crops 5, 27."""
    return _fcn(SKIPS[:1], "fcn16s", num_classes, **kwargs)


@register_model("fcn8s", task="semantic", default_kwargs={},
                description="FCN-8s, VGG16 + pool4 and pool3 skips, Long et al. 2015")
def fcn8s(num_classes=21, **kwargs) -> FCN:
    """FCN-8s: pool4 and pool3 skips, upsampled 8x; crops 5, 9, 31 (`at_once` variant)."""
    return _fcn(SKIPS, "fcn8s", num_classes, **kwargs)
