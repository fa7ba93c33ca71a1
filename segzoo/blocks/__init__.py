"""Shared building blocks: Keras layers and pure tensor ops."""

from segzoo.blocks.upsample import BilinearInitializer, Upsample2D, bilinear_kernel  # noqa: E402,F401
