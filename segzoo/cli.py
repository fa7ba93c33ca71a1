"""The `segzoo` command line (DESIGN.md "CLI").

    segzoo list
    segzoo train MODEL [--data NAME] [--data-dir DIR] ... [--out RUN_DIR]
    segzoo eval --checkpoint RUN_DIR/model.keras [--data NAME] [--split val] [--json]
    segzoo predict --checkpoint CKPT IMAGE... --out DIR
    segzoo export --checkpoint CKPT --out PATH [--format saved_model|tflite]
    segzoo demo

This module only parses arguments; each subcommand's work lives in
`segzoo.commands.<subcommand>.run(args) -> int`, imported when it is called so
`segzoo list` does not pay for what it does not use.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from segzoo.commands.model_args import parse_model_arg

# Commands that run no TensorFlow (`segzoo list` reads the model catalogue).
_WITHOUT_TENSORFLOW = ("list",)


_VERBOSE_HELP = "show TensorFlow's start-up log lines (hidden by default)"


def _image_size(text: str):
    from segzoo.commands.size_args import parse_image_size

    try:
        return parse_image_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _scale_jitter(text: str):
    from segzoo.commands.size_args import parse_scale_jitter

    try:
        return parse_scale_jitter(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segzoo",
        description="segzoo: FCN-32s/16s/8s, U-Net and Mask R-CNN for TensorFlow / Keras 3.",
    )
    parser.add_argument("--verbose", dest="show_startup_logs", action="store_true", help=_VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser("list", help="list the registered models")

    train = sub.add_parser("train", help="train a model through the common fit loop")
    train.add_argument("model", metavar="MODEL", help="registered model name (see `segzoo list`)")
    train.add_argument("--recipe", default=None,
                       help="named recipe (default: chosen from MODEL and --data)")
    train.add_argument("--data", default="shapes",
                       help="dataset: shapes (default, built in), voc, voc_instance, coco, folder, "
                            "instance_folder, labelme")
    train.add_argument("--data-dir", default=None, help="dataset directory (see README)")
    train.add_argument("--train-split", default=None, help="training split (recipe default)")
    train.add_argument("--val-split", default=None, help="validation split (recipe default)")
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--steps-per-epoch", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--image-size", type=_image_size, default=None, metavar="S[,S...]",
                       help="training resolution: crop size (semantic) or short side (Mask R-CNN; "
                            "also its inference min_size; several = multi-scale, inference at "
                            "the largest)")
    train.add_argument("--scale-jitter", type=_scale_jitter, default=None, metavar="LOW,HIGH",
                       help="Mask R-CNN: large-scale jitter (e.g. 0.1,2.0) instead of the "
                            "short-side resize")
    train.add_argument("--loss", default=None, choices=["ce", "dice", "focal", "ce+dice"],
                       help="semantic models: the loss (default: the recipe's)")
    train.add_argument("--learning-rate", type=float, default=None)
    train.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default=None)
    train.add_argument("--out", default=None, help="run directory (default runs/MODEL-DATA)")
    train.add_argument("--model-arg", type=parse_model_arg, action="append", default=[],
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
    ev.add_argument("--split", default=None,
                    help="split to evaluate (default: the data's validation split, val or val2017)")
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

    demo = sub.add_parser("demo", help="train, evaluate and predict on the built-in shapes set")
    demo.add_argument("--out", default="demo_out")
    demo.add_argument("--minutes", type=float, default=5.0)

    # Every subcommand also takes --verbose (`segzoo train ... --verbose`); SUPPRESS keeps
    # a `segzoo --verbose train` given before the subcommand.
    for command in sub.choices.values():
        command.add_argument("--verbose", dest="show_startup_logs", action="store_true",
                             default=argparse.SUPPRESS, help=_VERBOSE_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in _WITHOUT_TENSORFLOW:
        from segzoo.commands.quiet import start_tensorflow

        start_tensorflow(verbose=bool(args.show_startup_logs))
    module = importlib.import_module(f"segzoo.commands.{args.command}")
    try:
        return int(module.run(args) or 0)
    except Exception as error:
        # Bad input -> one line, exit 2; also when TensorFlow wrapped it (an error in the
        # data found while tf.data runs: segzoo.data.errors).
        from segzoo.data.errors import user_error_message

        message = user_error_message(error)
        if message is None:
            raise
        print(f"segzoo {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
