"""segzoo: a TensorFlow / Keras 3 segmentation model zoo.

    import segzoo
    segzoo.list_models()                      # ['fcn16s', 'fcn32s', 'fcn8s', 'mask_rcnn', 'unet']
    model = segzoo.get_model("fcn8s", num_classes=21)
"""

__version__ = "0.1.0"

from segzoo.registry import get_model, get_model_spec, list_models, register_model  # noqa: E402

__all__ = ["__version__", "get_model", "get_model_spec", "list_models", "register_model"]
