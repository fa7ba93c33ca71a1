"""Study definitions: the issue's variants, shared runs, staged skips, study selection errors."""

import pytest

from segzoo.ablation.runner import plan_runs, variant_keys
from segzoo.ablation.studies import FCN, MASK_RCNN, get_family, model_supports, select_studies


def test_mask_rcnn_studies_and_variants_are_the_issues():
    variants = {s.name: [v.name for v in s.variants] for s in MASK_RCNN.studies}
    assert variants == {
        "roi_pooler": ["align", "warp", "pool"], "mask_loss": ["sigmoid", "softmax"],
        "mask_head": ["class-specific", "class-agnostic"], "mask_scoring": ["off", "on"],
    }
    args = {(s.name, v.name): v.model_args for s in MASK_RCNN.studies for v in s.variants}
    assert args[("roi_pooler", "pool")] == {"roi_pooler": "pool"}
    assert args[("mask_loss", "softmax")] == {"mask_loss": "softmax"}
    assert args[("mask_head", "class-agnostic")] == {"class_agnostic_masks": True}
    assert args[("mask_scoring", "on")] == {"mask_scoring": True}
    # the shapes_mask_rcnn recipe's small model: R18, 128 px
    assert MASK_RCNN.model_args["backbone"] == "resnet18"
    assert MASK_RCNN.recipe.image_size == MASK_RCNN.model_args["min_size"] == 128


def test_fcn_studies_stage_skips_as_the_paper():
    variants = {s.name: [(v.name, v.model, v.init_from) for v in s.variants] for s in FCN.studies}
    assert variants["skips"] == [("fcn32s", "fcn32s", None), ("fcn16s", "fcn16s", "fcn32s"),
                                 ("fcn8s", "fcn8s", "fcn16s")]
    assert [v for v, _, _ in variants["upsampling"]] == [
        "bilinear_transposed frozen", "bilinear_transposed learnable", "transposed", "bilinear",
        "nearest"]
    keys = variant_keys(FCN.studies[1])
    assert keys == {"fcn32s": "fcn32s", "fcn16s": "fcn16s-from-fcn32s",
                    "fcn8s": "fcn8s-from-fcn16s-from-fcn32s"}


def test_shared_baselines_train_once_and_stages_come_after_their_source():
    runs = plan_runs(FCN, FCN.studies, [0, 1])
    keys = [(r.key, r.seed) for r in runs]
    # per seed: the pre-training, 5 upsampling + 16s + 8s (fcn32s shared)
    assert len(keys) == len(set(keys)) == 2 * 8
    for run in runs:  # every variant starts from the pre-training or its earlier stage
        assert run.pretraining or run.init_from
        if run.init_from:
            assert keys.index((run.init_from, run.seed)) < keys.index((run.key, run.seed))
    pre = [r for r in runs if r.pretraining]
    assert [(r.key, r.seed, r.model) for r in pre] == [
        ("pretraining-fcn8s", 0, "fcn8s"), ("pretraining-fcn8s", 1, "fcn8s")]
    # 40% of the budget: 2 x weight w = 0.4 x (2 w + 14 variant runs)
    assert pre[0].weight == pytest.approx(0.4 * 14 / (2 * 0.6))
    first_stages = [r for r in runs if not r.pretraining and "-from-" not in r.key]
    assert {(r.init_from, r.skip) for r in first_stages} == {
        ("pretraining-fcn8s", ("score*", "upscore*"))}
    fcn32s = next(r for r in runs if r.key == "fcn32s")
    assert fcn32s.model_args == {"base_filters": 8, "fc_channels": 256,
                                 "upsampling": "bilinear_transposed"}
    studies = [s for s in MASK_RCNN.studies if s.name != "mask_scoring"]
    assert [r.key for r in plan_runs(MASK_RCNN, studies, [0])] == [
        "pretraining-mask_rcnn", "mask_rcnn", "mask_rcnn-roi_pooler=warp", "mask_rcnn-roi_pooler=pool",
        "mask_rcnn-mask_loss=softmax", "mask_rcnn-class_agnostic_masks=True"]
    assert {r.skip for r in plan_runs(MASK_RCNN, studies, [0]) if not r.pretraining} == {
        ("roi_heads",)}


def test_unknown_study_is_one_line_value_error():
    with pytest.raises(ValueError, match=r"studies='roi_align': unknown study for mask_rcnn; "
                                         r"expected some of roi_pooler, mask_loss") as info:
        select_studies(MASK_RCNN, ["mask_loss,roi_align"])
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="unknown ablation 'unet'"):
        get_family("unet")


def test_studies_accept_comma_and_space_lists_in_the_families_order_of_request():
    assert [s.name for s in select_studies(FCN, ["skips,upsampling"])] == ["skips", "upsampling"]
    assert [s.name for s in select_studies(FCN, ["skips", "skips"])] == ["skips"]


def test_mask_scoring_study_follows_the_models_switch():
    on = MASK_RCNN.studies[3].variants[1]
    default = [s.name for s in select_studies(MASK_RCNN)]
    if model_supports(on):
        assert default == ["roi_pooler", "mask_loss", "mask_head", "mask_scoring"]
        assert variant_keys(MASK_RCNN.studies[3]) == {"off": "mask_rcnn",
                                                      "on": "mask_rcnn-mask_scoring=True"}
    else:
        assert default == ["roi_pooler", "mask_loss", "mask_head"]
        with pytest.raises(ValueError, match="mask_scoring"):
            select_studies(MASK_RCNN, ["mask_scoring"])
