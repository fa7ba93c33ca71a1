"""Facts of the whole repository's conventions (DESIGN.md "Conventions"), defined once.

Import-light (no TensorFlow): data pipelines, models, losses, metrics and
evaluation all read these.
"""

# Semantic masks: label value excluded from every loss and every metric
# (VOC's "void" and object borders; padding of crops and batches).
IGNORE_LABEL = 255

# ImageNet per-channel mean of RGB pixels in [0, 255] (Caffe / keras.applications
# "caffe" preprocessing, which subtracts it in BGR order: 103.939, 116.779, 123.68).
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)

# torchvision's ImageNet normalisation of RGB pixels scaled to [0, 1].
TORCHVISION_MEAN_RGB = (0.485, 0.456, 0.406)
TORCHVISION_STD_RGB = (0.229, 0.224, 0.225)
