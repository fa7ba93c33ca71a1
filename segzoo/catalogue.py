"""The built-in models as `segzoo list` shows them, without importing TensorFlow.

`segzoo list` must answer in well under a second, but importing TensorFlow
alone takes seconds and building the FCNs allocates 134M parameters each.
`CATALOGUE` is therefore a cached table of what the registry says about each
built-in model (task, description) and its parameter count at the registry's
`default_kwargs`. `tests/models/test_catalogue.py` checks it against the
registry and against built models, so it cannot go stale silently; after
adding or changing a built-in model, regenerate it with

    python -m segzoo.catalogue      # prints the new CATALOGUE literal
"""

from __future__ import annotations

# name -> (task, description, parameters at the registry's default_kwargs)
CATALOGUE = {
    "fcn16s": ("semantic", "FCN-16s, VGG16 + pool4 skip, Long et al. 2015", 134815994),
    "fcn32s": ("semantic", "FCN-32s, VGG16, Long et al. 2015 (Caffe reference net)", 136152917),
    "fcn8s": ("semantic", "FCN-8s, VGG16 + pool4 and pool3 skips, Long et al. 2015", 134489759),
    "keypoint_rcnn": ("instance", "Keypoint R-CNN, ResNet-FPN (torchvision's keypointrcnn): boxes + K keypoints "
                      "per instance", 46135978),
    "mask_rcnn": ("instance", "Mask R-CNN, ResNet-FPN (He et al. 2017); instance segmentation",
                  30931879),
    "ms_rcnn": ("instance", "Mask Scoring R-CNN (Huang et al. 2019): Mask R-CNN + MaskIoU head rescoring masks",
                47194283),
    "unet": ("semantic", "U-Net, Ronneberger et al. 2015 (padding='valid' is the paper's net)",
             31031810),
}


def builtin_entries() -> dict:
    """The table `CATALOGUE` should hold, computed from the registry by building every
    built-in model (slow: imports TensorFlow and allocates every model's weights)."""
    from segzoo.registry import get_model_spec, list_models

    entries = {}
    for name in list_models():
        spec = get_model_spec(name)
        if not spec.builder.__module__.startswith("segzoo."):
            continue  # registered by a user or a test, not built in
        model = spec.builder(**spec.default_kwargs)
        entries[name] = (spec.task, spec.description, int(model.count_params()))
        del model
    return entries


def main() -> None:
    print("CATALOGUE = {")
    for name, entry in sorted(builtin_entries().items()):
        print(f"    {name!r}: {entry!r},")
    print("}")


if __name__ == "__main__":
    main()
