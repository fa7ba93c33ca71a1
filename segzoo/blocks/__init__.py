"""Shared building blocks: Keras layers and pure tensor ops."""

from segzoo.blocks.crop import CropToReference  # noqa: E402,F401
from segzoo.blocks.fpn import FeaturePyramid, nearest_resize  # noqa: E402,F401
from segzoo.blocks.pyramid import (  # noqa: E402,F401
    GaussianPyramid,
    LaplacianPyramid,
    gaussian_pyramid,
    laplacian_pyramid,
    reconstruct_laplacian,
)
from segzoo.blocks.roi import (  # noqa: E402,F401
    assign_fpn_levels,
    multilevel_roi_align,
    multilevel_roi_pooling,
    roi_align,
    roi_pool,
    roi_warp,
)
from segzoo.blocks.roi_layers import MultiLevelRoIPooler, RoIAlign, RoIPool, RoIWarp  # noqa: E402,F401
from segzoo.blocks.upsample import BilinearInitializer, Upsample2D, bilinear_kernel  # noqa: E402,F401
