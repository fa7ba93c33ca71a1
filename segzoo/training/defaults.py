"""Recipe defaults that follow the model and the data: a recipe's choices never break a
valid configuration, and never override what the user set (`Recipe.user_fields`).

Called by the fit loop between resolving the recipe and building the model:

    recipe, notes = choose_splits(recipe, info.splits)           # the data's split names
    recipe = instance_scale(recipe)                              # min_size = --image-size
    recipe, note = pretrained_fallback(recipe, model_name)       # ImageNet or random init
    recipe, notes = scale_schedule(recipe, steps_per_epoch)      # lr, warm-up, epochs

Each returns the lines it printed-worthy (`notes`); the fit loop prints them and records
them in `metrics.json` under "defaults".
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from segzoo.conventions import IGNORE_LABEL
from segzoo.errors import ArgumentError, arg
from segzoo.training.recipes import Recipe

# Mask R-CNN's min_size : max_size in the paper and torchvision (800 : 1333).
MAX_SIZE_RATIO = 1333 / 800
_VGG_MODELS = ("fcn32s", "fcn16s", "fcn8s")


def largest_size(image_size) -> int:
    """The largest of an `image_size` (int or tuple): the inference scale."""
    return int(max(image_size)) if isinstance(image_size, list | tuple) else int(image_size)


def check_image_size(recipe: Recipe, task: str) -> None:
    """Several `--image-size` values (multi-scale) and `--scale-jitter` are for instance models.

    Raises:
        ValueError: a semantic recipe with a list of sizes or a scale jitter.
    """
    if task != "instance" and isinstance(recipe.image_size, list | tuple):
        raise ArgumentError(f"{arg('image_size', list(recipe.image_size))}: several sizes "
                         "(multi-scale training) are for instance models; semantic models take "
                         "one crop size (their scale augmentation is the recipe's scale_range)")
    if task != "instance" and recipe.scale_jitter is not None:
        raise ArgumentError(f"{arg('scale_jitter')} (large-scale jitter) is for instance models; "
                            "semantic models use the recipe's scale_range")


def _user(recipe, field):
    return field in recipe.user_fields


def choose_splits(recipe: Recipe, splits) -> tuple[Recipe, list[str]]:
    """Train / val splits the data has, where the recipe's are not there and the user gave none.

    `segzoo.data.default_splits` names them (train2017 / val2017, else train / val). A
    missing validation split that the user did not ask for means training without
    validation (said in a note). A missing training split is left for `load` to report
    (its error lists what is there).
    """
    from segzoo.data import default_splits

    splits = tuple(splits)
    train, val = default_splits(splits)
    changes, notes = {}, []
    if recipe.train_split not in splits and not _user(recipe, "train_split") and train:
        changes["train_split"] = train
    if recipe.val_split is not None and recipe.val_split not in splits:
        if not _user(recipe, "val_split"):
            changes["val_split"] = val
            if val is None:
                notes.append(f"no validation split (found {list(splits)}); training without "
                             "validation: the last epoch's weights are the checkpoint")
    if "train_split" in changes or changes.get("val_split"):
        notes.append(f"splits: train {changes.get('train_split', recipe.train_split)!r}, "
                     f"val {changes.get('val_split', recipe.val_split)!r} (from the data)")
    return dataclasses.replace(recipe, **changes), notes


def rois_per_image(short_side) -> int:
    """RoIs sampled per training image for a short side: the paper's 512 at 800 px, scaled
    with the image area and kept in [128, 512] (multiples of 32).

    512 RoIs were chosen for 800 x 1333 COCO images; a 128 px image has 1/39 of their
    area, and detectron2 advises 128 for small data sets. Fewer RoIs mean a smaller
    box-head batch (its 12544 x 1024 matmul) and fewer positives for the mask head.
    """
    scaled = 512 * (float(short_side) / 800) ** 2
    return int(min(512, max(128, 32 * round(scaled / 32))))


def instance_scale(recipe: Recipe) -> Recipe:
    """An instance recipe whose model resizes to the scale it is trained at.

    `min_size` (the short side at inference) = the largest `image_size`, unless
    `--model-arg min_size=` was given; `max_size` = the user's, else the recipe's
    own min:max ratio when its model_args set both, else the paper's 800:1333.
    `box_batch_size_per_image` = `rois_per_image(image_size)` unless the recipe or
    the user sets it (512 at 800 px, as the paper; 128 at 128 px).
    """
    args = dict(recipe.model_args)
    size = largest_size(recipe.image_size)
    if not _user(recipe, "model_args.min_size"):
        old_min, old_max = args.get("min_size"), args.get("max_size")
        args["min_size"] = size
        if not _user(recipe, "model_args.max_size"):
            ratio = (old_max / old_min) if old_min and old_max else MAX_SIZE_RATIO
            args["max_size"] = int(round(size * ratio))
    if "box_batch_size_per_image" not in args:  # a recipe's or the user's value stays
        args["box_batch_size_per_image"] = rois_per_image(size)
    return dataclasses.replace(recipe, model_args=args)


def imagenet_weights_file(model_name: str, model_args: dict) -> str:
    """The ImageNet weights file `backbone_weights="imagenet"` would load (cached or
    downloaded now).

    Raises:
        ValueError / FileNotFoundError: none exists for this backbone, or it is not
            cached and cannot be downloaded; the message names the file and where it goes.
    """
    if model_name in _VGG_MODELS:
        from segzoo.models.backbones.vgg import find_imagenet_weights

        return find_imagenet_weights()
    backbone = str(model_args.get("backbone", "resnet50"))
    if not backbone.startswith("resnet") or not backbone[6:].isdigit():
        raise ValueError(f"no ImageNet weights are known for backbone {backbone!r}")
    from segzoo.models.backbones import resnet_weights

    depth = int(backbone[6:])
    layout = str(model_args.get("backbone_layout", "keras"))
    if layout == "torchvision" or depth in (18, 34):  # torchvision's file (segzoo.weights)
        from segzoo.weights.catalogue import imagenet_resnet_path

        return imagenet_resnet_path(depth, layout)
    return resnet_weights.imagenet_weights_path(depth)


# Backbones whose only ImageNet weights are torchvision's (Keras has none): a recipe that
# asks for ImageNet weights builds them in the torchvision layout (`backbone_layout`,
# Mask R-CNN family), unless the user chose the layout.
_TORCHVISION_ONLY_BACKBONES = ("resnet18", "resnet34")


def imagenet_layout(recipe: Recipe, model_name: str) -> Recipe:
    """`backbone_layout="torchvision"` for a recipe's ImageNet ResNet-18/34 (instance models).

    Their ImageNet weights exist only as torchvision's file (catalogue entry
    ``resnet18_imagenet`` / ``resnet34_imagenet``), which needs the ResNet v1.5
    layout and torch normalisation; the Keras layout has no ImageNet weights
    for them. The user's `--model-arg backbone_layout=` and `backbone_weights=`
    are kept as given.
    """
    from segzoo.registry import get_model_spec

    args = recipe.model_args
    if (args.get("backbone_weights") != "imagenet" or _user(recipe, "model_args.backbone_weights")
            or _user(recipe, "model_args.backbone_layout") or "backbone_layout" in args
            or args.get("backbone") not in _TORCHVISION_ONLY_BACKBONES
            or get_model_spec(model_name).task != "instance"):
        return recipe
    return dataclasses.replace(recipe, model_args={**args, "backbone_layout": "torchvision"})


def pretrained_fallback(recipe: Recipe, model_name: str,
                        find=imagenet_weights_file) -> tuple[Recipe, dict | None]:
    """Random initialisation instead of a recipe's ImageNet backbone that cannot be had.

    Only when the *recipe* asked for `backbone_weights="imagenet"`: an explicit
    `--model-arg backbone_weights=imagenet` stays as it is (the model raises).
    A recipe's ResNet-18/34 first gets the torchvision layout (`imagenet_layout`),
    so the weights it looks for are torchvision's converted file.

    Returns:
        (recipe, record): record is None when nothing changed, else {"requested":
        "imagenet", "used": None, "reason": ...} for metrics.json ("reason" is the
        one line printed: which file would be used and where to put it).
    """
    if recipe.model_args.get("backbone_weights") != "imagenet":
        return recipe, None
    if _user(recipe, "model_args.backbone_weights"):
        return recipe, None
    recipe = imagenet_layout(recipe, model_name)
    try:
        find(model_name, recipe.model_args)
        return recipe, None
    except (ValueError, FileNotFoundError) as error:
        reason = " ".join(str(error).split())
    record = {
        "requested": "imagenet (recipe default)",
        "used": None,
        "reason": f"the recipe's ImageNet backbone is not available ({reason}); training "
                  "starts from random initialisation",
    }
    args = {**recipe.model_args, "backbone_weights": None}
    return dataclasses.replace(recipe, model_args=args), record


def scale_schedule(recipe: Recipe, steps_per_epoch: int) -> tuple[Recipe, list[str]]:
    """Learning rate, warm-up and epochs scaled to the data and the batch (the recipe's
    `reference_batch_size`, `warmup_fraction`, `min_steps`); user-set values stay."""
    steps_per_epoch = max(1, int(steps_per_epoch))
    changes, notes = {}, []
    if recipe.reference_batch_size and not _user(recipe, "learning_rate"):
        lr = recipe.learning_rate * recipe.batch_size / recipe.reference_batch_size
        if lr != recipe.learning_rate:
            changes["learning_rate"] = lr
            notes.append(f"learning rate {lr:.4g} = {recipe.learning_rate:g} x batch "
                         f"{recipe.batch_size} / {recipe.reference_batch_size} (linear scaling)")
    epochs = recipe.epochs
    if recipe.min_steps and not _user(recipe, "epochs"):
        needed = math.ceil(recipe.min_steps / steps_per_epoch)
        if needed > epochs:
            epochs = changes["epochs"] = needed
            notes.append(f"{epochs} epochs: at least {recipe.min_steps} steps of "
                         f"{steps_per_epoch} per epoch")
    if recipe.warmup_fraction is not None:
        total = steps_per_epoch * epochs
        warmup = min(recipe.warmup_steps, int(round(recipe.warmup_fraction * total)))
        if warmup != recipe.warmup_steps:
            changes["warmup_steps"] = warmup
            notes.append(f"warm-up {warmup} steps ({recipe.warmup_fraction:.0%} of "
                         f"{total} steps)")
    return dataclasses.replace(recipe, **changes), notes


def _accepts(builder, name) -> bool:
    """Whether `builder(**{name: ...})` is a constructor argument (its own, or through
    `**kwargs` that of the class it says it returns)."""
    import inspect
    import typing

    parameters = inspect.signature(builder).parameters
    if name in parameters:
        return True
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return False
    try:
        returned = typing.get_type_hints(builder).get("return")
    except Exception:  # unresolvable annotations: say no
        return False
    return inspect.isclass(returned) and name in inspect.signature(returned).parameters


def input_channels(recipe: Recipe, model_name: str, image_channels: int) -> tuple[Recipe, list]:
    """A model with an `input_channels` argument (U-Net) takes the data's channels
    (`DatasetInfo.image_channels`: 1 for single-channel data) unless the user set it."""
    import segzoo

    if image_channels == 3 or _user(recipe, "model_args.input_channels"):
        return recipe, []
    if "input_channels" in recipe.model_args:
        return recipe, []
    if not _accepts(segzoo.get_model_spec(model_name).builder, "input_channels"):
        return recipe, []
    args = {**recipe.model_args, "input_channels": int(image_channels)}
    return dataclasses.replace(recipe, model_args=args), [
        f"input_channels={image_channels}: the training images are single-channel"]


# --- nnU-Net's idea for the generic semantic recipe: defaults from a scan of the data -----------
SCAN_IMAGES = 64
PIXELS_PER_BATCH = 4 * 128 * 128  # the generic recipe's batch 4 of 128 px crops


def scan_semantic(elements, num_classes, max_images=SCAN_IMAGES) -> dict:
    """Statistics of up to `max_images` semantic elements {"image", "mask"}: image sizes,
    per-channel intensity mean / std / 0.5-99.5 percentiles, class pixel frequencies
    (255 excluded)."""
    counts = np.zeros(num_classes, np.int64)
    shorts, heights, widths, means, stds, lows, highs = [], [], [], [], [], [], []
    for i, element in enumerate(elements):
        if i >= max_images:
            break
        image, mask = np.asarray(element["image"]), np.asarray(element["mask"])
        heights.append(image.shape[0])
        widths.append(image.shape[1])
        shorts.append(min(image.shape[:2]))
        pixels = image.reshape(-1, image.shape[-1]).astype(np.float32)
        means.append(pixels.mean(0))
        stds.append(pixels.std(0))
        lows.append(np.percentile(pixels, 0.5, axis=0))
        highs.append(np.percentile(pixels, 99.5, axis=0))
        values = mask[mask != IGNORE_LABEL].astype(np.int64)
        counts += np.bincount(values[values < num_classes], minlength=num_classes)
    if not shorts:
        raise ValueError("the training split has no images to scan")
    total = max(int(counts.sum()), 1)
    return {
        "images_scanned": len(shorts),
        "median_size": [int(np.median(heights)), int(np.median(widths))],
        "intensity_mean": [round(float(v), 2) for v in np.mean(means, 0)],
        "intensity_std": [round(float(v), 2) for v in np.mean(stds, 0)],
        "intensity_range": [round(float(np.min(lows)), 1), round(float(np.max(highs)), 1)],
        "class_frequencies": [round(float(c) / total, 5) for c in counts],
        "_median_short": int(np.median(shorts)),
    }


def class_weights_of(frequencies, ratio=10.0) -> list[float] | None:
    """Loss weights for an imbalanced set: (median f / f_c)^0.5 clipped to [0.25, 4] when the
    most and least frequent present classes differ by more than `ratio`, else None.
    Classes never seen get weight 1."""
    f = np.asarray(frequencies, np.float64)
    present = f[f > 0]
    if present.size < 2 or present.max() / present.min() <= ratio:
        return None
    weights = np.where(f > 0, np.sqrt(np.median(present) / np.where(f > 0, f, 1.0)), 1.0)
    return [round(float(w), 3) for w in np.clip(weights, 0.25, 4.0)]


def semantic_data_defaults(recipe: Recipe, scan: dict, num_images=None) -> tuple[Recipe, dict]:
    """The generic semantic recipe fitted to a `scan_semantic` of its training split.

    - crop (`image_size`): the median short side, down to a multiple of 16, in [16, 512];
    - batch: about `PIXELS_PER_BATCH` pixels a step, in [2, 32], and at most a quarter of
      the split's `num_images` (at least 4 steps an epoch);
    - loss: "ce+dice" (nnU-Net's), with `class_weights_of` the class frequencies in its CE
      term when the classes are imbalanced;
    each only where the user did not set it. Returns (recipe, record for metrics.json).
    """
    changes, chosen = {}, {}
    if not _user(recipe, "image_size"):
        crop = int(np.clip(scan["_median_short"] // 16 * 16, 16, 512))
        changes["image_size"] = chosen["image_size"] = crop
    crop = largest_size(changes.get("image_size", recipe.image_size))
    if not _user(recipe, "batch_size"):
        batch = int(np.clip(round(PIXELS_PER_BATCH / crop**2), 2, 32))
        if num_images:
            batch = max(1, min(batch, int(num_images) // 4))
        changes["batch_size"] = chosen["batch_size"] = batch
    weights = None
    if not _user(recipe, "loss"):
        changes["loss"] = chosen["loss"] = "ce+dice"
        weights = class_weights_of(scan["class_frequencies"])
        if weights is not None:
            chosen["class_weights"] = weights
    record = {**{k: v for k, v in scan.items() if not k.startswith("_")}, "chosen": chosen}
    return dataclasses.replace(recipe, **changes, class_weights=weights), record


def describe_scan(record: dict) -> str:
    """One line saying what the scan found and chose."""
    chosen = ", ".join(f"{k} {v}" for k, v in record["chosen"].items()) or "nothing (all set)"
    frequencies = ", ".join(f"{f:.3f}" for f in record["class_frequencies"])
    return (f"data scan of {record['images_scanned']} training images: median size "
            f"{record['median_size'][0]}x{record['median_size'][1]}, intensity "
            f"{record['intensity_range'][0]}..{record['intensity_range'][1]}, class frequencies "
            f"[{frequencies}] -> {chosen}")


def instance_data_defaults(recipe: Recipe, elements, max_images=SCAN_IMAGES) -> tuple[Recipe, dict]:
    """The generic instance recipe's short side, anchors and detection budget from the data.

    Short side: the median short side of up to `max_images` training images, down to
    a multiple of 32, in [128, 800] (no 128 px image upsampled to the recipe's 512),
    unless `--image-size` was given.

    Anchors: when the median object (sqrt of its box area, at the training scale) is
    under 24 px, below the paper's smallest 32 px anchor (nuclei, cells, small parts),
    `anchor_sizes` become (a, 2a, 4a, 8a, 16a) with a the power of two nearest that
    median, in [8, 32]; else the paper's (32, ..., 512) stay.

    Detections per image: when a scanned image holds more than half of the model's
    default 100 (dense data), `max_detections` becomes twice the largest count,
    rounded up to a hundred (training itself has no instance cap:
    `instance_train_pipeline`).

    Model arguments the recipe or the user set are never changed.
    """
    import itertools

    from segzoo.models.mask_rcnn.builders import DEFAULTS as DETECTOR_DEFAULTS

    shorts, counts, objects = [], [], []  # objects: (sqrt box area, image short side)
    for element in itertools.islice(elements, max_images):
        short = min(np.asarray(element["image"]).shape[:2])
        shorts.append(short)
        if "classes" in element:
            counts.append(len(element["classes"]))
        if "boxes" in element and len(element["boxes"]):
            boxes = np.asarray(element["boxes"], np.float64).reshape(-1, 4)
            sides = np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
                            * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))
            objects += [(side, short) for side in sides]
    if not shorts:
        raise ValueError("the training split has no images to scan")
    record = {"images_scanned": len(shorts), "median_short_side": int(np.median(shorts)),
              "chosen": {}}
    if counts:
        record["max_instances_per_image"] = int(max(counts))
    # A model argument the recipe or the user set (`--model-arg` merges into model_args) stays.
    changes, args = {}, dict(recipe.model_args)
    if not _user(recipe, "image_size"):
        size = int(np.clip(record["median_short_side"] // 32 * 32, 128, 800))
        record["chosen"]["image_size"] = changes["image_size"] = size
    scale = largest_size(changes.get("image_size", recipe.image_size))
    if objects:
        median = float(np.median([side * scale / short for side, short in objects]))
        record["median_object_size"] = round(median, 1)
        if median < 24 and "anchor_sizes" not in recipe.model_args:
            smallest = int(np.clip(2 ** round(math.log2(max(median, 1.0))), 8, 32))
            args["anchor_sizes"] = record["chosen"]["anchor_sizes"] = [smallest * 2**i for i in range(5)]
    default_detections = DETECTOR_DEFAULTS["max_detections"]
    if counts and 2 * max(counts) > default_detections and "max_detections" not in recipe.model_args:
        detections = int(math.ceil(2 * max(counts) / 100) * 100)
        args["max_detections"] = record["chosen"]["max_detections"] = detections
    if args != recipe.model_args:
        changes["model_args"] = args
    return dataclasses.replace(recipe, **changes), record
