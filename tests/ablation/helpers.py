"""A tiny ablation family on `tiny_segmenter` (tests/training/tiny_model.py) for fast runner tests."""

import dataclasses

import tests.training.tiny_model  # noqa: F401  (registers "tiny_segmenter")
from segzoo.ablation.studies import SEMANTIC_METRICS, Claim, Family, Study, Variant
from segzoo.training.recipes import Recipe

WIDTH = Study("width", (
    Variant("w4", "tiny_segmenter", {"width": 4}),
    Variant("w8", "tiny_segmenter", {"width": 8}),
), Claim("wider is better", winners=("w8",), metric="mean_iou"))

STAGED = Study("staged", (
    Variant("w4", "tiny_segmenter", {"width": 4}),
    Variant("w4 again", "tiny_segmenter", {"width": 4}, init_from="w4"),
), Claim("a second stage helps", order=("w4", "w4 again"), metric="mean_iou"))

TINY = Family(
    name="tiny", task="semantic",
    recipe=Recipe(name="tiny", data="shapes", val_split=None, epochs=1, steps_per_epoch=2,
                  batch_size=2, image_size=32, learning_rate=1e-2, augment=False,
                  data_args={"num_images": 8}),
    model_args={}, studies=(WIDTH, STAGED), metrics=SEMANTIC_METRICS, default_minutes=0.1,
    out="unused",
)


def tiny_family(**changes) -> Family:
    return dataclasses.replace(TINY, **changes)
