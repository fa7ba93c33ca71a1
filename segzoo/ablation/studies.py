"""The ablation studies of `segzoo ablate`, as data.

A *family* (``mask_rcnn`` or ``fcn``) has a base recipe (one training recipe,
data set and evaluation for all its variants), the model arguments every
variant shares, and its studies. A *study* compares variants that differ in
one model switch; each variant names the registered model and the switch's
model arguments. The seed's claim about the study (the user's notes,
"溶解实验", and the papers they summarise) is data too: which variant should
win on which metric.

Variants with the same model, model arguments and initialisation are one
*run*: the Mask R-CNN baseline (RoIAlign, sigmoid, class-specific masks, no
mask scoring) is trained once and appears in all four of its studies, as the
paper's tables repeat their baseline row; FCN-32s with frozen bilinear
upsampling is both the upsampling baseline and the first stage of the skips
study.

Skips are staged as in the FCN paper: FCN-16s starts from the FCN-32s
checkpoint of the same seed and FCN-8s from the FCN-16s one (`init_from`
names the earlier variant; weights load by layer name).

Shared pre-training: the papers' variants all start from one ImageNet
classifier, so each compares what it changes on the same features. The zoo
cannot download ImageNet weights, and from scratch none of these nets learns
its task within a CPU share of minutes (measured: every FCN variant scored the
all-background mean IU after 250-600 steps). So a family may name a
`Pretraining`: one run per seed, trained first with its share of the budget,
whose weights initialise every variant's first stage except the layers the
studies change (`Pretraining.skip`: the RoI heads of Mask R-CNN; the score and
upsampling layers of FCN), which start fresh in every variant, the baseline
included.
"""

from __future__ import annotations

import dataclasses
import inspect

from segzoo.errors import ArgumentError, arg
from segzoo.training.recipes import RECIPES, Recipe


@dataclasses.dataclass(frozen=True)
class Variant:
    """One arm of a study.

    Attributes:
        name: the variant's label in the tables (e.g. "align").
        model: registered model name (`segzoo.get_model`).
        model_args: the switch's constructor arguments (on top of the
            family's shared `Family.model_args`).
        init_from: name of a variant of the same study whose checkpoint (same
            seed) initialises this one by layer name, or None (from scratch).
    """

    name: str
    model: str
    model_args: dict = dataclasses.field(default_factory=dict)
    init_from: str | None = None


@dataclasses.dataclass(frozen=True)
class Claim:
    """What the seed says about a study, checkable on the ablation's numbers.

    Attributes:
        text: the claim as the notes / paper state it.
        winners: the variants that should score highest on `metric`
            (one of them must be the best).
        metric: the metric key deciding the study (e.g. "mask_ap", "mean_iou").
        order: optional strictly increasing order of variants on `metric`
            (FCN-32s < FCN-16s < FCN-8s); checked instead of `winners`.
        largest_gain_at: optional; the winner's margin over every other variant
            must be largest at this metric among `gain_metrics` ("most at AP75").
        gain_metrics: the metrics compared for `largest_gain_at`.
    """

    text: str
    winners: tuple[str, ...] = ()
    metric: str = "mask_ap"
    order: tuple[str, ...] = ()
    largest_gain_at: str | None = None
    gain_metrics: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Study:
    """A named comparison of variants (the first one is the baseline)."""

    name: str
    variants: tuple[Variant, ...]
    claim: Claim

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise ValueError(f"study {self.name!r} has no variant {name!r}")


@dataclasses.dataclass(frozen=True)
class Pretraining:
    """The shared first stage of a family (one run per seed).

    Attributes:
        variant: the model and model arguments trained (on top of `Family.model_args`).
        skip: `fnmatch` patterns of layer paths NOT copied into the variants (the parts
            the studies change; they keep each variant's fresh initialisation).
        share: fraction of a `--minutes` budget it trains for (the rest is split evenly
            over the variants' runs); with `--epochs N` it trains N epochs like the others.
    """

    variant: Variant
    skip: tuple[str, ...]
    share: float = 0.3


@dataclasses.dataclass(frozen=True)
class Family:
    """Everything one `segzoo ablate FAMILY` needs.

    Attributes:
        name: "mask_rcnn" | "fcn".
        task: "instance" | "semantic" (which metrics the tables show).
        recipe: the one training recipe of every variant (its `model_args`
            are ignored; `model_args` below apply).
        model_args: constructor arguments every variant shares.
        studies: the studies, in table order.
        metrics: (key, column header) of the table, in the paper's order.
        default_minutes: the budget when neither --minutes nor --epochs is given.
        out: default output directory.
        pretraining: the shared first stage (see the module docstring), or None: every
            variant's first stage starts from scratch.
    """

    name: str
    task: str
    recipe: Recipe
    model_args: dict
    studies: tuple[Study, ...]
    metrics: tuple[tuple[str, str], ...]
    default_minutes: float
    out: str
    pretraining: Pretraining | None = None


INSTANCE_METRICS = (
    ("mask_ap", "AP"), ("mask_ap50", "AP50"), ("mask_ap75", "AP75"),
    ("box_ap", "APbb"), ("box_ap50", "APbb50"), ("box_ap75", "APbb75"),
)
SEMANTIC_METRICS = (
    ("pixel_accuracy", "pixel acc."), ("mean_accuracy", "mean acc."),
    ("mean_iou", "mean IU"), ("fw_iou", "f.w. IU"),
)

# Mask R-CNN R18-FPN at 128 px on shapes: the shapes_mask_rcnn recipe (narrow heads, fewer
# proposals), trained without per-epoch validation (the ablation evaluates each checkpoint once,
# on the val split, with the evaluator of `segzoo eval`). Every variant starts from a shared
# pre-training of the baseline (its backbone, FPN and RPN; the RoI heads, where the studies
# differ, start fresh): from scratch, the recipe needs ~2,000 steps (8 epochs) for mask AP50
# 0.88, several times a variant's share of 40 minutes on 2 CPU cores.
_MRCNN = RECIPES["shapes_mask_rcnn"]
MASK_RCNN = Family(
    name="mask_rcnn",
    task="instance",
    recipe=dataclasses.replace(_MRCNN, name="ablate_mask_rcnn", val_split=None, model_args={}),
    model_args=dict(_MRCNN.model_args),
    studies=(
        Study("roi_pooler", (
            Variant("align", "mask_rcnn", {"roi_pooler": "align"}),
            Variant("warp", "mask_rcnn", {"roi_pooler": "warp"}),
            Variant("pool", "mask_rcnn", {"roi_pooler": "pool"}),
        ), Claim("RoIAlign beats RoIPool and RoIWarp, most at AP75", winners=("align",),
                 metric="mask_ap", largest_gain_at="mask_ap75",
                 gain_metrics=("mask_ap", "mask_ap50", "mask_ap75"))),
        Study("mask_loss", (
            Variant("sigmoid", "mask_rcnn", {"mask_loss": "sigmoid"}),
            Variant("softmax", "mask_rcnn", {"mask_loss": "softmax"}),
        ), Claim("per-pixel sigmoid (binary loss) beats softmax (multinomial loss)",
                 winners=("sigmoid",), metric="mask_ap")),
        Study("mask_head", (
            Variant("class-specific", "mask_rcnn", {"class_agnostic_masks": False}),
            Variant("class-agnostic", "mask_rcnn", {"class_agnostic_masks": True}),
        ), Claim("a mask per class beats one class-agnostic mask (paper: 30.3 vs 29.7 AP)",
                 winners=("class-specific",), metric="mask_ap")),
        Study("mask_scoring", (
            Variant("off", "mask_rcnn", {"mask_scoring": False}),
            Variant("on", "mask_rcnn", {"mask_scoring": True}),
        ), Claim("MS R-CNN: scoring masks by a predicted MaskIoU raises mask AP",
                 winners=("on",), metric="mask_ap")),
    ),
    metrics=INSTANCE_METRICS,
    default_minutes=40.0,
    out="runs/ablate-mrcnn",
    pretraining=Pretraining(Variant("baseline", "mask_rcnn", {}), skip=("roi_heads",), share=0.4),
)

# FCN on shapes: VGG16 from scratch is ~33 GFLOP per 32 px image (conv1_1's 100-pixel pad
# makes every input at least 200 px). The ablation keeps the Caffe net's layout (pad 100, fc6
# 7x7, fc7, zero score layers, the deconvolutions and crops) at 1/8 of the widths (base_filters
# 8: 8..64 channels, fc6/fc7 256; 1.1 M parameters; ~0.35 s a batch-4 step of 128 px crops on
# 2 quiet AVX2 cores), Adam 1e-3 after a short warm-up, scale 0.5-2 and flips, evaluated at the
# full 128 px. The loss is the zoo's default for imbalanced data, not the paper's plain CE:
# `scan_data` picks CE + Dice with class weights from the class frequencies (the crop and
# batch stay the recipe's). Measured: with plain CE no variant left the all-background mean IU
# (0.218, background is ~87% of the pixels) in 250-600 steps; with CE + Dice an FCN-8s from
# scratch reached 0.31 after 650 steps. Every variant starts from a shared FCN-8s pre-training
# (its VGG16 and fc6/fc7; score and upsampling layers fresh).
FCN = Family(
    name="fcn",
    task="semantic",
    recipe=Recipe(
        name="ablate_fcn", data="shapes", val_split=None, epochs=10, batch_size=4,
        image_size=128, optimizer="adam", learning_rate=1e-3, warmup_steps=20,
        scale_range=(0.5, 2.0), scan_data=True, user_fields=("image_size", "batch_size"),
    ),
    model_args={"base_filters": 8, "fc_channels": 256},
    studies=(
        Study("upsampling", (
            Variant("bilinear_transposed frozen", "fcn32s", {"upsampling": "bilinear_transposed"}),
            Variant("bilinear_transposed learnable", "fcn32s",
                    {"upsampling": "bilinear_transposed", "learnable_upsampling": True}),
            Variant("transposed", "fcn32s", {"upsampling": "transposed"}),
            Variant("bilinear", "fcn32s", {"upsampling": "bilinear"}),
            Variant("nearest", "fcn32s", {"upsampling": "nearest"}),
        ), Claim("a bilinear-initialised transposed convolution (frozen, as FCN, or learnable) "
                 "upsamples best: better than a plain transposed convolution, a bilinear resize "
                 "or repeat (nearest)",
                 winners=("bilinear_transposed frozen", "bilinear_transposed learnable"),
                 metric="mean_iou")),
        Study("skips", (
            Variant("fcn32s", "fcn32s", {"upsampling": "bilinear_transposed"}),
            Variant("fcn16s", "fcn16s", {"upsampling": "bilinear_transposed"}, init_from="fcn32s"),
            Variant("fcn8s", "fcn8s", {"upsampling": "bilinear_transposed"}, init_from="fcn16s"),
        ), Claim("finer skips help: FCN-32s < FCN-16s < FCN-8s (paper: 63.6 / 65.0 / 65.5 mean IU)",
                 order=("fcn32s", "fcn16s", "fcn8s"), metric="mean_iou")),
    ),
    metrics=SEMANTIC_METRICS,
    default_minutes=30.0,
    out="runs/ablate-fcn",
    pretraining=Pretraining(Variant("fcn8s", "fcn8s", {"upsampling": "bilinear_transposed"}),
                            skip=("score*", "upscore*"), share=0.4),
)

FAMILIES = {family.name: family for family in (MASK_RCNN, FCN)}


def get_family(name) -> Family:
    """The family called `name` (a `Family` is returned as it is); `ValueError` naming the known
    ones otherwise."""
    if isinstance(name, Family):
        return name
    if name not in FAMILIES:
        raise ValueError(f"unknown ablation {name!r}; expected one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def model_parameters(model: str) -> dict | None:
    """{keyword: default} the registered `model` accepts (`inspect.Parameter.empty`: no default).

    The builder's named parameters, plus, when it forwards `**kwargs`, the constructor's of the
    class it returns (its return annotation) and its module's `DEFAULTS` mapping (builders that
    turn keywords into parts). None when neither tells (then every keyword is assumed accepted).
    """
    import segzoo

    builder = segzoo.get_model_spec(model).builder
    signature = inspect.signature(builder, eval_str=True)

    def named(parameters):
        return {name: p.default for name, p in parameters.items()
                if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)}

    parameters = named(signature.parameters)
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return parameters
    cls = signature.return_annotation
    defaults = getattr(inspect.getmodule(builder), "DEFAULTS", None)
    if not inspect.isclass(cls) and not isinstance(defaults, dict):
        return None
    if inspect.isclass(cls):
        parameters = {**named(inspect.signature(cls.__init__).parameters), **parameters}
    if isinstance(defaults, dict):
        parameters = {**defaults, **parameters}
    return parameters


def model_supports(variant: Variant) -> bool:
    """Whether the variant's model accepts its arguments (`mask_scoring` needs MS R-CNN to be
    built into `MaskRCNN`)."""
    parameters = model_parameters(variant.model)
    return parameters is None or all(name in parameters for name in variant.model_args)


def select_studies(family: Family, names=None) -> tuple[Study, ...]:
    """The studies to run: `names` (a list, comma lists allowed) or every study the installed
    models support.

    Raises:
        ValueError: an unknown study name, or a named study whose model switch this segzoo
            build does not have.
    """
    known = {study.name: study for study in family.studies}
    if not names:
        return tuple(study for study in family.studies
                     if all(model_supports(v) for v in study.variants))
    wanted = [n.strip() for name in names for n in str(name).split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ArgumentError(
            f"{arg('studies', ','.join(unknown))}: unknown study for {family.name}; "
            f"expected some of {', '.join(known)}")
    selected = []
    for name in dict.fromkeys(wanted):
        study = known[name]
        missing = [v.name for v in study.variants if not model_supports(v)]
        if missing:
            raise ArgumentError(
                f"{arg('studies', name)}: variant(s) {', '.join(missing)} need model arguments "
                f"{sorted({k for v in study.variants for k in v.model_args})} that this segzoo "
                f"build's {study.variants[0].model!r} does not accept")
        selected.append(study)
    return tuple(selected)


__all__ = ["Variant", "Claim", "Study", "Pretraining", "Family", "FAMILIES", "MASK_RCNN", "FCN", "get_family",
           "select_studies", "model_supports", "INSTANCE_METRICS", "SEMANTIC_METRICS"]
