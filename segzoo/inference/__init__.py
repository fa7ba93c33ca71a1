"""Inference as users run it: folders of images (`inputs`), large images in tiles
(`tiling`) and test-time augmentation (`tta`)."""
