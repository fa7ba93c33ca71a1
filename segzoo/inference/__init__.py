"""segzoo.inference: running trained models on images (apart from training).

    from segzoo.inference import predict_labels, predict_instances, predict_probabilities
"""

from segzoo.inference.predictor import predict_instances, predict_labels, predict_probabilities

__all__ = ["predict_instances", "predict_labels", "predict_probabilities"]
