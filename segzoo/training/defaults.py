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

from segzoo.training.recipes import Recipe

# Mask R-CNN's min_size : max_size in the paper and torchvision (800 : 1333).
MAX_SIZE_RATIO = 1333 / 800
_VGG_MODELS = ("fcn32s", "fcn16s", "fcn8s")


def parse_image_size(text):
    """`--image-size` text or value -> int, or a tuple of ints for "96,112,128".

    Raises:
        ValueError: not positive integers.
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        values = [text]
    elif isinstance(text, list | tuple):
        values = list(text)
    else:
        values = [v for v in str(text).replace(" ", "").split(",") if v]
    try:
        sizes = [int(v) for v in values if float(v) == int(float(v))]
    except (TypeError, ValueError):
        sizes = []
    if not sizes or len(sizes) != len(values) or min(sizes) < 1:
        raise ValueError(
            f"--image-size expects a positive integer or comma-separated integers "
            f"(e.g. 128 or 96,112,128), got {text!r}"
        )
    return sizes[0] if len(sizes) == 1 else tuple(sizes)


def largest_size(image_size) -> int:
    """The largest of an `image_size` (int or tuple): the inference scale."""
    return int(max(image_size)) if isinstance(image_size, list | tuple) else int(image_size)


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


def instance_scale(recipe: Recipe) -> Recipe:
    """An instance recipe whose model resizes to the scale it is trained at.

    `min_size` (the short side at inference) = the largest `image_size`, unless
    `--model-arg min_size=` was given; `max_size` = the user's, else the recipe's
    own min:max ratio when its model_args set both, else the paper's 800:1333.
    """
    args = dict(recipe.model_args)
    size = largest_size(recipe.image_size)
    if not _user(recipe, "model_args.min_size"):
        old_min, old_max = args.get("min_size"), args.get("max_size")
        args["min_size"] = size
        if not _user(recipe, "model_args.max_size"):
            ratio = (old_max / old_min) if old_min and old_max else MAX_SIZE_RATIO
            args["max_size"] = int(round(size * ratio))
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
    from segzoo.models.backbones.resnet import imagenet_weights_path

    return imagenet_weights_path(int(backbone[6:]))


def pretrained_fallback(recipe: Recipe, model_name: str,
                        find=imagenet_weights_file) -> tuple[Recipe, dict | None]:
    """Random initialisation instead of a recipe's ImageNet backbone that cannot be had.

    Only when the *recipe* asked for `backbone_weights="imagenet"`: an explicit
    `--model-arg backbone_weights=imagenet` stays as it is (the model raises).

    Returns:
        (recipe, record): record is None when nothing changed, else {"requested":
        "imagenet", "used": None, "reason": ...} for metrics.json ("reason" is the
        one line printed: which file would be used and where to put it).
    """
    if recipe.model_args.get("backbone_weights") != "imagenet":
        return recipe, None
    if _user(recipe, "model_args.backbone_weights"):
        return recipe, None
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
