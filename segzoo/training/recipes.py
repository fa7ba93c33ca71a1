"""Named training recipes: plain dataclasses, overridden by command-line flags.

    recipe = get_recipe("voc_fcn8s")
    recipe = apply_overrides(recipe, epochs=5, batch_size=2)

`default_recipe_name(model, data)` picks `{data}_{model}` when it exists (e.g.
`shapes_unet`), else the generic recipe of the model's task.

The FCN recipes follow the Caffe reference solvers of Long et al.
(`voc-fcn32s/solver.prototxt` etc.): batch 1, SGD momentum 0.99, weight decay
5e-4, a fixed learning rate of 1e-10 / 1e-12 / 1e-14 on the *unnormalised*
loss (summed over the ~500x375 pixels of an image), no augmentation, and staged
initialisation: FCN-32s from ImageNet VGG16, FCN-16s from the FCN-32s run
(`--init-from RUN32/model.keras`), FCN-8s from the FCN-16s run.
"""

from __future__ import annotations

import dataclasses
import difflib


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything `segzoo.training.fit.train` needs besides the model name.

    Attributes:
        name: recipe name.
        data: dataset name for `segzoo.data.load`.
        train_split / val_split: split names (val_split None: no validation;
            the last epoch's weights are then the checkpoint).
        epochs: passes over the training split (or of `steps_per_epoch` steps).
        steps_per_epoch: None = one pass over the split per epoch.
        batch_size: global batch size (split over replicas by tf.distribute).
        image_size: crop size (semantic) / short side (instance).
        optimizer: "sgd" | "adam" | "adamw".
        learning_rate: base learning rate.
        momentum: SGD momentum.
        weight_decay: decoupled weight decay (see `optimizers.build_optimizer`).
        schedule: "poly" (poly decay to 0 after warm-up) or "constant".
        poly_power: poly exponent.
        warmup_steps: linear warm-up steps.
        normalize_loss: mean CE over valid pixels (True) or per-image sum
            (Caffe FCN's unnormalised loss).
        augment: random scale / flip / photometric jitter (semantic).
        scale_range: random scale range when augmenting.
        val_batch_size: 1 evaluates at each image's original size.
        val_max_images: cap on validation images per epoch (None = all).
        model_args: constructor keyword arguments for `segzoo.get_model`.
        data_args: keyword arguments for `segzoo.data.load` / `get_info`.
        init_from: `.keras` checkpoint to initialise from by layer name.
        init_skip: `fnmatch` patterns of layer paths that `init_from` leaves at their
            initialisation (`segzoo ablate`'s shared pre-training: a detector's trunk
            without its RoI heads).
        clipnorm: optional gradient clipping.
        loss: semantic models: "ce" | "dice" | "focal" | "ce+dice"
            (`segzoo.training.losses.get_loss`); instance models compute their own.
        scale_jitter: instance models: None, or (low, high) large-scale jitter
            (`instance_train_pipeline`'s `scale_jitter`).
        reference_batch_size: linear scaling rule (Goyal et al.): when set, the
            learning rate used is `learning_rate * batch_size / reference_batch_size`.
        warmup_fraction: when set, warm-up is at most this fraction of the run's
            steps (and at most `warmup_steps`).
        min_steps: when set, epochs are raised until the run has at least this
            many steps (small data sets still get a full schedule).
        class_weights: semantic models: None or K per-class weights of the CE (term).
        scan_data: the generic recipes: derive the crop, batch and loss (semantic) or the
            short side (instance) from a scan of the training split
            (`segzoo.training.defaults.semantic_data_defaults` / `instance_data_defaults`).
        user_fields: what the user set (flags; "model_args.NAME" for
            `--model-arg NAME=...`): data-derived defaults never change those.
    """

    name: str
    data: str = "shapes"
    train_split: str = "train"
    val_split: str | None = "val"
    epochs: int = 10
    steps_per_epoch: int | None = None
    batch_size: int = 8
    image_size: int = 128
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "poly"
    poly_power: float = 0.9
    warmup_steps: int = 0
    normalize_loss: bool = True
    augment: bool = True
    scale_range: tuple = (0.5, 2.0)
    val_batch_size: int = 1
    val_max_images: int | None = None
    model_args: dict = dataclasses.field(default_factory=dict)
    data_args: dict = dataclasses.field(default_factory=dict)
    init_from: str | None = None
    init_skip: tuple = ()
    clipnorm: float | None = None
    loss: str = "ce"
    scale_jitter: tuple | None = None
    reference_batch_size: int | None = None
    warmup_fraction: float | None = None
    min_steps: int | None = None
    class_weights: tuple | None = None
    scan_data: bool = False
    user_fields: tuple = ()


def _fcn(name, model_args, learning_rate):
    return Recipe(
        name=name, data="voc", train_split="train", val_split="val", epochs=50, batch_size=1,
        image_size=500, optimizer="sgd", learning_rate=learning_rate, momentum=0.99,
        weight_decay=5e-4, schedule="constant", normalize_loss=False, augment=False,
        scale_range=(1.0, 1.0), model_args=model_args,
    )


# The narrow R-CNN of the shapes recipes (CPU minutes; see "shapes_mask_rcnn").
_SHAPES_RCNN = {
    "backbone": "resnet18", "min_size": 128, "max_size": 128, "fpn_channels": 64,
    "representation_size": 256, "mask_head_channels": 64, "rpn_pre_nms_top_n_test": 500,
    "rpn_post_nms_top_n_train": 300, "rpn_post_nms_top_n_test": 100,
    "box_batch_size_per_image": 128,
}

RECIPES: dict[str, Recipe] = {
    # FCN, Caffe reference solvers (staged: 32s <- ImageNet, 16s <- 32s, 8s <- 16s).
    "voc_fcn32s": _fcn("voc_fcn32s", {"backbone_weights": "imagenet"}, 1e-10),
    "voc_fcn16s": _fcn("voc_fcn16s", {}, 1e-12),
    "voc_fcn8s": _fcn("voc_fcn8s", {}, 1e-14),
    # U-Net on VOC: same-padding variant from scratch, Adam + poly, full augmentation.
    "voc_unet": Recipe(
        name="voc_unet", data="voc", epochs=100, batch_size=8, image_size=320, optimizer="adam",
        learning_rate=1e-3, weight_decay=1e-5, warmup_steps=200, val_max_images=None,
    ),
    # The built-in synthetic set: U-Net (base_filters=16, 64 px crops) for a few CPU minutes
    # (README "Training"). Measured on 2 shared CPU cores: no batch norm is faster per second
    # (BN costs ~50% more per step and its moving statistics lag early); batch 4 gives more
    # updates per second than 8; lr 2e-3 with 50 warm-up steps; the crops show the 128 px
    # images at scale 0.5-1 (whole objects at 0.5, validation scale at 1).
    "shapes_unet": Recipe(
        name="shapes_unet", data="shapes", epochs=30, batch_size=4, image_size=64,
        optimizer="adam", learning_rate=2e-3, warmup_steps=50, scale_range=(0.5, 1.0),
        model_args={"base_filters": 16},
    ),
    "shapes_fcn8s": Recipe(
        name="shapes_fcn8s", data="shapes", epochs=10, batch_size=4, image_size=128,
        optimizer="adam", learning_rate=1e-4, warmup_steps=20,
    ),
    # Mask R-CNN on the synthetic shapes (instance view), from scratch on CPU: narrow heads
    # and fewer proposals / RoIs than the paper so it fits in a few CPU minutes. Measured
    # (2 shared CPU cores): val mask AP50 0.88 after the 8 epochs; SGD (lr 0.01, 6 epochs)
    # reached 0.42 and Adam 5e-4 with 64 RoIs 0.60; SGD at lr >= 0.01 without clipping diverged.
    "shapes_mask_rcnn": Recipe(
        name="shapes_mask_rcnn", data="shapes", epochs=8, batch_size=2, image_size=128,
        optimizer="adam", learning_rate=1e-3, weight_decay=1e-4, warmup_steps=100,
        clipnorm=5.0, val_max_images=16, data_args={"task": "instance"},
        model_args=_SHAPES_RCNN,
    ),
    # MS R-CNN on shapes: the shapes_mask_rcnn budget and heads plus a narrow MaskIoU head, so
    # mask AP with and without mask scoring compare at the same budget.
    "shapes_ms_rcnn": Recipe(
        name="shapes_ms_rcnn", data="shapes", epochs=8, batch_size=2, image_size=128,
        optimizer="adam", learning_rate=1e-3, weight_decay=1e-4, warmup_steps=100,
        clipnorm=5.0, val_max_images=16, data_args={"task": "instance"},
        model_args={**_SHAPES_RCNN, "maskiou_head_channels": 64,
                    "maskiou_representation_size": 256},
    ),
    # Keypoint R-CNN on the shapes' extreme points (shapes.py, keypoints=True): the same
    # detector with torchvision's keypoint head narrowed (4 conv3x3-64 instead of 8 x 512)
    # for CPU minutes; the best checkpoint is chosen by val keypoint AP.
    "shapes_keypoint_rcnn": Recipe(
        name="shapes_keypoint_rcnn", data="shapes", epochs=8, batch_size=2, image_size=128,
        optimizer="adam", learning_rate=1e-3, weight_decay=1e-4, warmup_steps=100,
        clipnorm=5.0, val_max_images=16, data_args={"task": "instance", "keypoints": True},
        model_args={**{k: v for k, v in _SHAPES_RCNN.items() if k != "mask_head_channels"},
                    "keypoint_head_channels": 64, "keypoint_head_layers": 4},
    ),
    "voc_mask_rcnn": Recipe(
        name="voc_mask_rcnn", data="voc_instance", epochs=24, batch_size=2, image_size=800,
        optimizer="sgd", learning_rate=0.0025, momentum=0.9, weight_decay=1e-4, warmup_steps=500,
        val_max_images=500, model_args={"backbone_weights": "imagenet"},
    ),
    # The COCO 2017 release (train2017 / val2017): the 1x schedule of Detectron / torchvision,
    # lr 0.02 at batch 16, linearly scaled to other batch sizes.
    "coco_mask_rcnn": Recipe(
        name="coco_mask_rcnn", data="coco", train_split="train2017", val_split="val2017",
        epochs=12, batch_size=16, image_size=800, optimizer="sgd", learning_rate=0.02,
        momentum=0.9, weight_decay=1e-4, warmup_steps=1000, val_max_images=500,
        reference_batch_size=16, model_args={"backbone_weights": "imagenet"},
    ),
    # torchvision's keypointrcnn_resnet50_fpn schedule (26 epochs; lr 0.02 at batch 16).
    "coco_keypoint_rcnn": Recipe(
        name="coco_keypoint_rcnn", data="coco", train_split="train2017", val_split="val2017",
        epochs=26, batch_size=16, image_size=800, optimizer="sgd", learning_rate=0.02,
        momentum=0.9, weight_decay=1e-4, warmup_steps=1000, val_max_images=500,
        data_args={"keypoints": True}, model_args={"backbone_weights": "imagenet"},
    ),
    # Generic fall-backs for any model / dataset pair.
    # Every --data folder / labelme user gets this: nnU-Net's idea, the crop, batch and loss
    # come from a scan of the training split (printed, and recorded in metrics.json).
    "semantic": Recipe(name="semantic", epochs=20, batch_size=4, learning_rate=1e-3,
                       warmup_steps=50, scan_data=True),
    # Any other instance data (COCO-format exports, instance folders, labelme): the same
    # SGD recipe scaled to the data: lr 0.02 x batch / 16 (linear scaling rule), warm-up 5%
    # of the run (at most the reference's 1,000 steps), poly decay, 12 epochs but at least
    # 1,000 steps so a small set still gets a schedule; ImageNet backbone when available;
    # the short side is the median of the training images' (scan_data) unless --image-size.
    "instance": Recipe(
        name="instance", epochs=12, batch_size=4, image_size=512, optimizer="sgd",
        learning_rate=0.02, momentum=0.9, weight_decay=1e-4, warmup_steps=1000,
        reference_batch_size=16, warmup_fraction=0.05, min_steps=1000, clipnorm=10.0,
        val_max_images=500, scan_data=True, model_args={"backbone_weights": "imagenet"},
    ),
}


def list_recipes() -> list[str]:
    return sorted(RECIPES)


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`; unknown names raise `ValueError` with close matches."""
    if name not in RECIPES:
        close = difflib.get_close_matches(name, list(RECIPES), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"Unknown recipe {name!r}.{hint} Recipes: {', '.join(list_recipes())}.")
    return RECIPES[name]


def default_recipe_name(model: str, data: str, task: str, splits=None) -> str:
    """`{data}_{model}` if such a recipe exists (and, when the data's `splits` are given,
    its training split is one of them: `coco_mask_rcnn` is for the COCO release, other
    COCO-format sets get the generic recipe), else the generic one for `task`."""
    candidate = f"{data}_{model}"
    if candidate in RECIPES and (splits is None or RECIPES[candidate].train_split in splits):
        return candidate
    return task


def apply_overrides(recipe: Recipe, **overrides) -> Recipe:
    """A copy of `recipe` with every non-None override applied.

    `model_args` / `data_args` overrides are merged into the recipe's dicts.

    Raises:
        ValueError: an override names no recipe field.
    """
    fields = {f.name for f in dataclasses.fields(Recipe)}
    changes, user = {}, list(recipe.user_fields)
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in fields:
            raise ValueError(f"recipe has no field {key!r}; fields: {', '.join(sorted(fields))}")
        if key in ("model_args", "data_args"):
            user += [f"{key}.{name}" for name in value]
            value = {**getattr(recipe, key), **value}
        else:
            user.append(key)
        changes[key] = value
    changes["user_fields"] = tuple(dict.fromkeys(user))
    return dataclasses.replace(recipe, **changes)
