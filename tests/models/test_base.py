"""The model contract (segzoo.models.base): class ids, category ids, the traced-function helper."""

import gc
import weakref

import numpy as np
import pytest

import segzoo
from segzoo.models.base import InputSpec, SegmentationModel, is_segzoo_model, traced
from segzoo.models.unet import UNet, valid_tiling
from tests.export.tiny_models import TinyDetector, TinySegmenter


def test_semantic_ids_are_all_classes_from_zero():
    model = TinySegmenter(num_classes=3, class_names=["bg", "a", "b"])
    assert model.foreground_class_names == ["bg", "a", "b"]
    assert model.category_ids == [0, 1, 2]
    assert is_segzoo_model(model) and model.training_input_spec == InputSpec()


def test_instance_ids_are_classes_one_to_k_default_one_to_k():
    model = TinyDetector(num_classes=3, class_names=["background", "cat", "dog", "cow"])
    assert model.foreground_class_names == ["cat", "dog", "cow"]
    assert model.category_ids == [1, 2, 3]
    given = TinyDetector(num_classes=3, category_ids=[3, 7, 90])
    assert given.category_ids == [3, 7, 90]
    with pytest.raises(ValueError, match="one id per class"):
        given.category_ids = [1, 2]
    with pytest.raises(ValueError, match="distinct"):
        given.category_ids = [1, 1, 2]


def test_mask_rcnn_follows_the_contract():
    model = segzoo.get_model("mask_rcnn", num_classes=2, backbone="resnet18", min_size=64,
                             max_size=96, fpn_channels=16, representation_size=16,
                             mask_head_channels=8, category_ids=[5, 9])
    assert model.category_ids == [5, 9] and len(model.foreground_class_names) == 2
    assert model.training_input_spec == InputSpec(min_size=64, max_size=96)
    assert model.supports_jit and set(model.class_dependent_layers) <= {
        layer.name for layer in model.layers}
    assert model.get_config()["category_ids"] == [5, 9]


def test_class_dependent_layers_name_top_level_layers():
    model = segzoo.get_model("unet", num_classes=2, base_filters=2)
    assert set(model.class_dependent_layers) <= {layer.name for layer in model.layers}
    assert model.training_input_spec.channels == 3
    grey = segzoo.get_model("unet", num_classes=2, base_filters=2, input_channels=1)
    assert grey.training_input_spec.channels == 1


def test_a_plain_keras_model_is_not_a_segzoo_model():
    import keras

    inputs = keras.Input((4,))
    plain = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    plain.task = "semantic"  # an attribute alone is not the contract
    assert not is_segzoo_model(plain)
    assert issubclass(UNet, SegmentationModel)


def _valid_output_size(size, depth):
    """Independent simulation of a valid U-Net's sizes (None when a map vanishes or floors)."""
    for _ in range(depth):
        size -= 4
        if size <= 0 or size % 2:
            return None
        size //= 2
    size -= 4
    for _ in range(depth):
        if size <= 0:
            return None
        size = 2 * size - 4
    return size if size > 0 else None


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_valid_tiling_is_derived_from_the_depth(depth):
    tiling = valid_tiling(depth)
    tileable = [s for s in range(8, 1200) if _valid_output_size(s, depth)]
    assert tileable[0] == tiling.multiple * tiling.min_blocks + tiling.offset
    assert all((s - tiling.offset) % tiling.multiple == 0 for s in tileable)
    assert all(s - _valid_output_size(s, depth) == 2 * tiling.margin for s in tileable)
    if depth == 4:  # the paper's net: 572 -> 388
        assert (tiling.multiple, tiling.offset, tiling.margin) == (16, 124, 92)
        assert _valid_output_size(572, 4) == 388


def test_traced_function_lives_on_the_model():
    first, second = TinySegmenter(num_classes=2), TinySegmenter(num_classes=2)
    calls = []

    def run(model):
        def fn(x):
            calls.append(1)
            return model(x)
        return traced(model, "run", fn, reduce_retracing=True)

    image = np.zeros((1, 8, 8, 3), np.float32)
    for _ in range(3):  # alternating models never retraces
        run(first)(image)
        run(second)(image)
    assert len(calls) == 2 and run(first) is run(first) and run(first) is not run(second)
    ref = weakref.ref(second)
    del second
    gc.collect()
    assert ref() is None  # no global cache keeps the model alive
