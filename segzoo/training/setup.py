"""What the fit loop sets up before training: the recipe from the flags, the model from the dataset.

`config` is the `segzoo train` argparse namespace or any mapping / object with
the same names (missing ones take the recipe's value). `model_args` (a dict)
or `model_arg` (`[(name, value), ...]`, as the CLI's `--model-arg` gives after
parsing the text) are constructor keyword arguments; values are passed as
they are (the text parsing of `--model-arg` is the command line's,
`segzoo.commands.model_args`).
"""

from __future__ import annotations

import dataclasses

from segzoo.training.recipes import Recipe, apply_overrides, default_recipe_name, get_recipe


def config_value(config, name, default=None):
    """`config[name]` for a mapping, `config.name` for a namespace; `default` when absent."""
    if isinstance(config, dict):
        return config.get(name, default)
    return vars(config).get(name, default) if hasattr(config, "__dict__") else default


def resolve_recipe(config):
    """(recipe, model spec): the recipe of `config.recipe` (a name or a `Recipe`; default from
    model and data) with the flags applied."""
    import segzoo

    model_name = config_value(config, "model")
    spec = segzoo.get_model_spec(model_name)
    data = config_value(config, "data") or "shapes"
    recipe = config_value(config, "recipe") or default_recipe_name(model_name, data, spec.task)
    if not isinstance(recipe, Recipe):
        recipe = get_recipe(recipe)
    if config_value(config, "data") and data != recipe.data:
        recipe = dataclasses.replace(recipe, data=data)
    model_args = _model_args(config, spec)
    if spec.task == "instance" and wants_keypoints(model_name, {**recipe.model_args,
                                                                **(model_args or {})}):
        # Keypoint models read keypoint data (coco: person_keypoints_*.json).
        recipe = apply_overrides(recipe, data_args={"keypoints": True})
    return apply_overrides(
        recipe,
        train_split=config_value(config, "train_split"),
        val_split=config_value(config, "val_split"),
        epochs=config_value(config, "epochs"),
        steps_per_epoch=config_value(config, "steps_per_epoch"),
        batch_size=config_value(config, "batch_size"),
        image_size=config_value(config, "image_size"),
        learning_rate=config_value(config, "learning_rate"),
        optimizer=config_value(config, "optimizer"),
        init_from=config_value(config, "init_from"),
        model_args=model_args,
    ), spec


def _model_args(config, spec) -> dict | None:
    """`model_args` / `model_arg` pairs, plus `trainable_layers` for instance models."""
    kwargs = dict(config_value(config, "model_args") or {})
    kwargs.update(dict(config_value(config, "model_arg") or ()))
    trainable_layers = config_value(config, "trainable_layers")
    if trainable_layers:
        if spec.task != "instance":
            raise ValueError(
                f"trainable_layers applies to backbone stages of instance models; "
                f"{spec.name!r} is a {spec.task} model"
            )
        kwargs.setdefault("trainable_layers", trainable_layers)
    return kwargs or None


def wants_keypoints(model_name: str, model_args: dict | None) -> bool:
    """Whether the model trains on keypoints: `keypoint_rcnn`, or `keypoints=True` (mask_rcnn)."""
    value = (model_args or {}).get("keypoints", model_name == "keypoint_rcnn")
    return value not in (False, None, "False", "false", "0", 0)


def build_model(model_name: str, info, model_args: dict):
    """`segzoo.get_model` with the dataset's classes (names, and ids for instance models)
    and, for keypoint data, its keypoints (K, names, skeleton)."""
    import segzoo

    kwargs = dict(model_args)
    kwargs.setdefault("num_classes", info.num_classes)
    if info.task == "semantic":
        kwargs.setdefault("class_names", list(info.class_names))
    else:
        kwargs.setdefault("class_names", ["background", *info.class_names])
        if info.category_ids is not None:
            kwargs.setdefault("category_ids", list(info.category_ids))
        if info.keypoint_names is not None and wants_keypoints(model_name, model_args):
            kwargs.setdefault("num_keypoints", len(info.keypoint_names))
            kwargs.setdefault("keypoint_names", list(info.keypoint_names))
            kwargs.setdefault("keypoint_skeleton", [list(p) for p in info.skeleton])
    return segzoo.get_model(model_name, **kwargs)
