"""The `segzoo` command line (DESIGN.md "CLI").

    segzoo list
    segzoo train MODEL [--data NAME] [--data-dir DIR] ... [--out RUN_DIR]
    segzoo eval --checkpoint RUN_DIR/model.keras [--data NAME] [--split val] [--json]
    segzoo predict --checkpoint CKPT IMAGE... --out DIR
    segzoo export --checkpoint CKPT --out PATH [--format saved_model|tflite]
    segzoo demo
    segzoo convert --from torchvision|caffe --arch NAME --weights FILE --out OUT
    segzoo weights [list | get NAME [--file F]]

This module only parses arguments; each subcommand's work lives in
`segzoo.commands.<subcommand>.run(args) -> int`, imported when it is called so
`segzoo list` does not pay for what it does not use.
"""

from __future__ import annotations

import argparse
import importlib
import sys


def _model_arg(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(
            f"--model-arg expects NAME=VALUE (e.g. base_filters=16), got {text!r}"
        )
    name, value = text.split("=", 1)
    if not name.isidentifier():
        raise argparse.ArgumentTypeError(f"--model-arg name {name!r} is not a Python identifier")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segzoo",
        description="segzoo: FCN-32s/16s/8s, U-Net and Mask R-CNN for TensorFlow / Keras 3.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser("list", help="list the registered models")

    train = sub.add_parser("train", help="train a model through the common fit loop")
    train.add_argument("model", metavar="MODEL", help="registered model name (see `segzoo list`)")
    train.add_argument("--recipe", default=None,
                       help="named recipe (default: chosen from MODEL and --data)")
    train.add_argument("--data", default="shapes",
                       help="dataset: shapes (default, built in), voc, voc_instance, coco, folder")
    train.add_argument("--data-dir", default=None, help="dataset directory (see README)")
    train.add_argument("--train-split", default=None, help="training split (recipe default)")
    train.add_argument("--val-split", default=None, help="validation split (recipe default)")
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--steps-per-epoch", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--image-size", type=int, default=None,
                       help="training resolution: crop size (semantic) or short side (Mask R-CNN)")
    train.add_argument("--learning-rate", type=float, default=None)
    train.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default=None)
    train.add_argument("--out", default=None, help="run directory (default runs/MODEL-DATA)")
    train.add_argument("--model-arg", type=_model_arg, action="append", default=[],
                       metavar="NAME=VALUE", help="model constructor argument, repeatable")
    train.add_argument("--init-from", default=None, metavar="CKPT",
                       help="initialise weights by layer name from a .keras checkpoint")
    train.add_argument("--trainable-layers", default=None,
                       choices=["heads", "3+", "4+", "5+", "all"],
                       help="backbone stages to train (Mask R-CNN)")
    train.add_argument("--strategy", default="default",
                       choices=["default", "one_device", "mirrored", "multi_worker"])
    train.add_argument("--mixed-precision", action="store_true")
    train.add_argument("--jit-compile", action="store_true")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                       help="stop training after this many minutes (best checkpoint kept)")

    ev = sub.add_parser("eval", help="evaluate a checkpoint")
    ev.add_argument("--checkpoint", required=True, help="RUN_DIR/model.keras")
    ev.add_argument("--data", default="shapes")
    ev.add_argument("--data-dir", default=None)
    ev.add_argument("--split", default="val")
    ev.add_argument("--batch-size", type=int, default=1)
    ev.add_argument("--max-images", type=int, default=None)
    ev.add_argument("--json", action="store_true", help="print one JSON object")

    pr = sub.add_parser("predict", help="segment images with a checkpoint")
    pr.add_argument("--checkpoint", required=True)
    pr.add_argument("images", nargs="+", metavar="IMAGE")
    pr.add_argument("--out", required=True, help="output directory")
    pr.add_argument("--score-threshold", type=float, default=0.5,
                    help="instance models: keep detections scoring at least this")

    ex = sub.add_parser("export", help="export a checkpoint as SavedModel or TFLite")
    ex.add_argument("--checkpoint", required=True)
    ex.add_argument("--out", required=True)
    ex.add_argument("--format", default="saved_model", choices=["saved_model", "tflite"])
    ex.add_argument("--max-detections", type=int, default=None)
    ex.add_argument("--serving-layout", action="store_true",
                    help="write OUT/NAME/VERSION/ as TF Serving expects")
    ex.add_argument("--quantize", default=None, choices=["fp16"], help="TFLite quantisation")

    cv = sub.add_parser("convert", help="convert published torchvision / Caffe weights")
    cv.add_argument("--from", dest="source", required=True, choices=["torchvision", "caffe"])
    cv.add_argument("--arch", required=True,
                    help="torchvision: resnet18/34/50/101, maskrcnn_resnet50_fpn, "
                         "keypointrcnn_resnet50_fpn; caffe: fcn32s, fcn16s, fcn8s")
    cv.add_argument("--weights", required=True, help="the published .pth / .caffemodel file")
    cv.add_argument("--out", required=True, help=".keras (models) or .weights.h5 (ResNets)")

    wt = sub.add_parser("weights", help="list / get published checkpoints ($SEGZOO_HOME cache)")
    wt_sub = wt.add_subparsers(dest="action", metavar="ACTION")
    wt_sub.add_parser("list", help="list the catalogue")
    wt_get = wt_sub.add_parser("get", help="download (or take --file), verify, convert; print the path")
    wt_get.add_argument("name", metavar="NAME")
    wt_get.add_argument("--file", default=None, help="a copy of the published file")

    demo = sub.add_parser("demo", help="train, evaluate and predict on the built-in shapes set")
    demo.add_argument("--out", default="demo_out")
    demo.add_argument("--minutes", type=float, default=5.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"segzoo.commands.{args.command}")
    try:
        return int(module.run(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"segzoo {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
