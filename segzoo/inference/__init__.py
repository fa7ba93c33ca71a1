"""segzoo.inference: running trained models on images (apart from training).

    from segzoo.inference import predict_labels, predict_instances, predict_probabilities

Around them, inference as users run it: folders of images, progress, failures
and resumable outputs (`inputs`), the folder run of `segzoo predict` (`runner`),
large images in tiles (`tiling`, with compact masks in `instances`) and
test-time augmentation (`tta`).
"""

from segzoo.inference.predictor import predict_instances, predict_labels, predict_probabilities

__all__ = ["predict_instances", "predict_labels", "predict_probabilities"]
