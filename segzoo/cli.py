"""The `segzoo` command line (DESIGN.md "CLI").

    segzoo list
    segzoo train MODEL [--data NAME] [--data-dir DIR] ... [--out RUN_DIR]
    segzoo eval --checkpoint RUN_DIR/model.keras [--data NAME] [--split val] [--json]
    segzoo predict --checkpoint CKPT DIR_OR_GLOB... --out DIR [--tile SIZE --overlap PX]
                   [--tta flip[,scales=...]] [--resume]
    segzoo export --checkpoint CKPT --out PATH [--format saved_model|tflite|onnx]
    segzoo demo
    segzoo ablate mask_rcnn|fcn [--data shapes] [--minutes M] [--epochs N] [--studies ...]
                  [--seeds S] --out DIR
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
def _add_inference_options(parser) -> None:
    parser.add_argument("--tile", dest="tile_size", type=int, default=None, metavar="SIZE",
                        help="sliding-window inference in SIZE x SIZE tiles for larger images")
    parser.add_argument("--overlap", type=int, default=None, metavar="PX",
                        help="pixels shared by neighbouring tiles (default SIZE // 4)")
    parser.add_argument("--tta", default=None, metavar="flip[,scales=S,...]",
                        help="semantic test-time augmentation, e.g. flip or flip,scales=0.75,1,1.25")


def _precision_arg(parser, help=None) -> None:
    # Choices spelled here (not imported) so `segzoo list` does not import Keras.
    parser.add_argument(
        "--precision", default=None, choices=["float32", "bfloat16", "float16"],
        help=help or "compute precision: Keras policy float32 (default), mixed_bfloat16 or "
                     "mixed_float16; bfloat16 pays on CPUs with AMX / AVX512-BF16 and recent GPUs")


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
    _precision_arg(train)
    train.add_argument("--mixed-precision", action="store_true",
                       help="alias of --precision float16")
    train.add_argument("--jit-compile", action="store_true")
    train.add_argument("--data-service", default=None, metavar="ADDRESS",
                       help="preprocess on a tf.data service dispatcher's workers (grpc://HOST:PORT)")
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
    ev.add_argument("--plots", default=None, metavar="DIR",
                    help="write evaluation figures (confusion matrix, IoU bars / PR curves, AP by size)")
    _add_inference_options(ev)
    _precision_arg(ev)

    pr = sub.add_parser("predict", help="segment images with a checkpoint")
    pr.add_argument("--checkpoint", required=True)
    pr.add_argument("images", nargs="+", metavar="DIR_OR_GLOB",
                    help="image files, directories of images or glob patterns ('**' recursive)")
    pr.add_argument("--out", required=True, help="output directory")
    pr.add_argument("--score-threshold", type=float, default=0.5,
                    help="instance models: keep detections scoring at least this")
    pr.add_argument("--batch-size", type=int, default=4,
                    help="equal-size images (or tiles) per model call")
    pr.add_argument("--resume", action="store_true",
                    help="skip images whose outputs are already in --out")
    _add_inference_options(pr)
    _precision_arg(pr)

    ex = sub.add_parser("export", help="export a checkpoint as SavedModel, TFLite or ONNX")
    ex.add_argument("--checkpoint", required=True)
    ex.add_argument("--out", required=True)
    ex.add_argument("--format", default="saved_model", choices=["saved_model", "tflite", "onnx"])
    ex.add_argument("--max-detections", type=int, default=None)
    ex.add_argument("--serving-layout", action="store_true",
                    help="write OUT/NAME/VERSION/ as TF Serving expects")
    ex.add_argument("--quantize", default=None, choices=["fp16", "int8"],
                    help="TFLite quantisation: fp16 weights, or int8 (full-integer, calibrated)")
    ex.add_argument("--calibration-data", default=None, metavar="NAME[:split]",
                    help="--quantize int8: dataset whose images calibrate it (e.g. shapes:train)")
    ex.add_argument("--calibration-images", type=int, default=None, metavar="N",
                    help="--quantize int8: calibrate on the first N images (default 64)")
    ex.add_argument("--data-dir", default=None, help="the --calibration-data directory")
    _precision_arg(ex, "SavedModel compute precision (float32 variables; uint8 in, same outputs)")

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

    ab = sub.add_parser("ablate", help="rerun the seed's ablation studies (Mask R-CNN, FCN)")
    ab.add_argument("family", choices=["mask_rcnn", "fcn"], help="which paper's ablations")
    ab.add_argument("--data", default="shapes", help="dataset (default shapes, built in)")
    ab.add_argument("--data-dir", default=None)
    ab.add_argument("--minutes", type=float, default=None,
                    help="whole budget, split evenly over runs x seeds (default 40 mask_rcnn, 30 fcn)")
    ab.add_argument("--epochs", type=int, default=None, help="train every run N epochs instead")
    ab.add_argument("--steps-per-epoch", type=int, default=None)
    ab.add_argument("--studies", nargs="+", default=None, metavar="STUDY",
                    help="studies (comma or space separated; default all)")
    ab.add_argument("--seeds", type=int, default=1, help="seeds per variant (mean and spread)")
    ab.add_argument("--eval-images", type=int, default=None,
                    help="evaluate on the first N val images (default all)")
    ab.add_argument("--out", default=None,
                    help="output directory (default runs/ablate-mrcnn or runs/ablate-fcn)")

    # Every subcommand also takes --verbose (`segzoo train ... --verbose`); SUPPRESS keeps
    # a `segzoo --verbose train` given before the subcommand.
    for command in sub.choices.values():
        command.add_argument("--verbose", dest="show_startup_logs", action="store_true",
                             default=argparse.SUPPRESS, help=_VERBOSE_HELP)
    return parser


def command_flags(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """Python keyword -> option string of `segzoo COMMAND` (its sub-actions included).

    A flag's argparse `dest` is the keyword the library takes for it (`--from` is
    `source`, `--tile` is `tile_size`), so library messages, which name keywords
    (`segzoo.errors`), are shown with the flags the user typed.
    """
    flags: dict[str, str] = {}

    def collect(current):
        # argparse has no public accessor for a parser's actions; `_actions` is stable.
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                if current is parser:
                    collect(action.choices[command])
                else:
                    for child in action.choices.values():
                        collect(child)
            elif action.option_strings and action.dest not in flags:
                flags[action.dest] = max(action.option_strings, key=len)

    collect(parser)
    return flags


def _error_message(error: BaseException, parser, command: str) -> str | None:
    """The one line the CLI prints for `error` (None: not the user's error), with the
    library's argument names as `command`'s flags."""
    from segzoo.data.errors import user_error_message
    from segzoo.errors import argument_errors

    message = user_error_message(error)
    if message is None:
        return None
    flags = command_flags(parser, command)
    for found in argument_errors(error):  # also when wrapped in another error's message
        message = message.replace(str(found), found.render(flags))
    return message


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in _WITHOUT_TENSORFLOW:
        from segzoo.commands.quiet import start_tensorflow

        start_tensorflow(verbose=bool(args.show_startup_logs))
    module = importlib.import_module(f"segzoo.commands.{args.command}")
    try:
        return int(module.run(args) or 0)
    except Exception as error:
        # Bad input -> one line, exit 2; also when TensorFlow wrapped it (an error in the
        # data found while tf.data runs: segzoo.data.errors). Argument names are shown as
        # the flags of this command (segzoo.errors).
        message = _error_message(error, parser, args.command)
        if message is None:
            raise
        print(f"segzoo {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
