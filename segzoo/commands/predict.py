"""`segzoo predict --checkpoint CKPT DIR_OR_GLOB... --out DIR [--tile SIZE --overlap PX]
[--tta flip[,scales=...]] [--resume]` (the folder run: `segzoo.inference.runner`).

Per input image NAME.EXT:
- semantic: `NAME.png`, class ids (uint8, palette PNG with the VOC colours) at
  the input's size; `NAME_overlay.png`, the VOC colours blended over the image.
- instance: `NAME.png`, uint16/uint8 instance ids at the input size (value i =
  detection i of NAME.json, 1-based; 0 = none; where masks overlap the
  higher-scoring detection wins); `NAME.json`, `{"detections": [{"box":
  [x1, y1, x2, y2], "class_id": the dataset's id (model.category_ids),
  "class_name", "score", "mask": {"size": [H, W], "counts": COCO RLE}}, ...]}`
  sorted by score; `NAME_overlay.png`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from segzoo.data.readers import read_image


def instance_id_map(masks: np.ndarray, scores: np.ndarray, shape) -> np.ndarray:
    """[H, W] ids: i + 1 where detection i's mask is set; higher score wins on overlap."""
    ids = np.zeros(shape, dtype=np.uint16)
    for i in np.argsort(scores, kind="stable"):  # low to high: the best is painted last
        ids[np.asarray(masks[i]).astype(bool)] = i + 1
    return ids


def predict_semantic(model, image, name, out_dir):
    """Writes `name.png` and `name_overlay.png` of one image (`segzoo demo`); returns the labels."""
    from segzoo.inference import predict_labels
    from segzoo.inference.runner import write_semantic

    labels = predict_labels(model, image)
    write_semantic(np.asarray(image), labels, name, out_dir)
    return labels


def tiling_options(args) -> tuple:
    """(tile, overlap) of `--tile` / `--overlap` (overlap defaults to a quarter tile)."""
    if args.tile_size is None:
        if args.overlap:
            raise ValueError(f"--overlap {args.overlap} needs --tile SIZE")
        return None, 0
    return args.tile_size, args.tile_size // 4 if args.overlap is None else args.overlap


def run(args) -> int:
    """Predicts every input (files, directories, globs); exit status 1 when some image failed."""
    from segzoo.inference.inputs import expand_inputs
    from segzoo.inference.runner import Predictor, predict_paths
    from segzoo.inference.tta import parse_tta
    from segzoo.training.precision import load_checkpoint_at

    paths = expand_inputs(args.images)  # argument errors before the model loads
    tta = parse_tta(args.tta)
    tile, overlap = tiling_options(args)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if tile is not None:  # asked for large images: lift PIL's decompression-bomb limit (89 MP)
        Image.MAX_IMAGE_PIXELS = None
    model = load_checkpoint_at(args.checkpoint, getattr(args, "precision", None))
    predictor = Predictor(model, tile_size=tile, overlap=overlap, tta=tta,
                          score_threshold=args.score_threshold, tile_batch=args.batch_size)
    return predict_paths(predictor, paths, args.out, read_image=read_image,
                         batch_size=args.batch_size, resume=args.resume)
