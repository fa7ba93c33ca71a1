"""InstanceTask: pipelines in the Mask R-CNN training format and COCO-AP evaluation."""

import numpy as np
import pytest

import segzoo
import segzoo.data
from segzoo.inference import predict_instances
from segzoo.training.instance_task import InstanceTask
from segzoo.training.tasks import get_task

TINY = dict(num_classes=3, backbone="resnet18", min_size=64, max_size=64, fpn_channels=32, representation_size=64,
            mask_head_channels=32, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=32, max_detections=5)


@pytest.fixture(scope="module")
def model():
    return segzoo.get_model("mask_rcnn", **TINY)


def test_get_task_and_training_batches(model):
    task = get_task(model)
    assert isinstance(task, InstanceTask) and task.monitor == "val_mask_ap" and task.compile_kwargs() == {}
    info = segzoo.data.get_info("shapes", task="instance")
    data = task.train_dataset(info, "shapes", None, "train", 64, 2, seed=0)
    images, targets = next(iter(data))
    # max_size 64 -> padded to 64 x 64; instance rows: the batch's largest count (no cap), the
    # others padded with class 0; masks at box resolution (issue #11), 56 x 56 over each box.
    rows = int((targets["classes"].numpy() > 0).sum(1).max())
    assert images.shape == (2, 64, 64, 3) and targets["mask_crops"].shape == (2, rows, 56, 56)
    assert "masks" not in targets
    assert targets["classes"].shape == (2, rows) and targets["boxes"].shape == (2, rows, 4)
    semantic = segzoo.data.get_info("shapes")
    with pytest.raises(ValueError, match="instance"):
        task.train_dataset(semantic, "shapes", None, "train", 64, 2, seed=0)


def test_evaluate_returns_coco_metrics_and_handles_negatives(model):
    task = InstanceTask(model)
    elements = list(segzoo.data.load("shapes", "val", task="instance", num_images=3, image_size=64)
                    .as_numpy_iterator())
    elements.append({"image": np.zeros((48, 40, 3), np.uint8), "boxes": np.zeros((0, 4), np.float32),
                     "classes": np.zeros((0,), np.int32), "masks": np.zeros((0, 48, 40), np.uint8),
                     "is_crowd": np.zeros((0,), bool), "image_id": 999})
    metrics = task.evaluate(model, elements)
    assert metrics["num_images"] == 4
    for key in ("box_ap", "box_ap50", "mask_ap", "mask_ap50", "mask_ap75"):
        assert 0.0 <= metrics[key] <= 1.0
    detections = predict_instances(model, elements[-1]["image"])
    n = len(detections["scores"])
    assert detections["masks"].shape == (n, 48, 40) and detections["boxes"].shape == (n, 4)


def test_mask_ap_callback_writes_validation_ap_into_logs(model):
    task = InstanceTask(model, val_max_images=2)
    info = segzoo.data.get_info("shapes", task="instance")
    (callback,) = task.callbacks(info, "shapes", None, "val")
    callback.set_model(model)
    logs = {"loss": 1.0}
    callback.on_epoch_end(0, logs)
    for key in ("val_mask_ap", "val_mask_ap50", "val_box_ap"):
        assert key in logs and (np.isnan(logs[key]) or 0.0 <= logs[key] <= 1.0)


def test_fit_loop_monitors_validation_mask_ap_and_passes_trainable_layers(tmp_path):
    """`segzoo train mask_rcnn`: the checkpoint is chosen by val_mask_ap, and
    `--trainable-layers heads` freezes the whole backbone."""
    import json

    from segzoo.models.base import load_checkpoint
    from segzoo.training.fit import train
    from segzoo.training.recipes import Recipe

    recipe = Recipe(name="tiny_instance", data="shapes", epochs=1, steps_per_epoch=1, batch_size=1,
                    image_size=64, val_max_images=2,
                    data_args={"task": "instance", "num_images": 4, "image_size": 64},
                    model_args={k: v for k, v in TINY.items() if k != "num_classes"})
    out = tmp_path / "run"
    result = train({"model": "mask_rcnn", "recipe": recipe, "out": str(out),
                    "trainable_layers": "heads", "verbose": 0})
    assert result.monitor == "val_mask_ap"
    assert result.best_epoch == 1 and 0.0 <= result.best_value <= 1.0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best"]["monitor"] == "val_mask_ap" and metrics["best"]["epoch"] == 1
    def trainable_backbone_weights(model):
        return [w for w in model.trainable_weights if "conv" in w.path and "block" in w.path]

    # The composed detector holds no trainable_layers scalar: the frozen stages live in its
    # backbone part, and they stay frozen in the saved checkpoint.
    assert result.model.backbone.trainable_weights == []
    assert trainable_backbone_weights(result.model) == []
    reloaded = load_checkpoint(out / "model.keras")
    assert reloaded.backbone.trainable_weights == [] and trainable_backbone_weights(reloaded) == []
    assert len(reloaded.trainable_weights) == len(result.model.trainable_weights) > 0


def test_trainable_layers_is_rejected_for_semantic_models():
    from segzoo.training.fit import resolve_recipe

    with pytest.raises(ValueError, match="trainable_layers"):
        resolve_recipe({"model": "unet", "trainable_layers": "heads"})
