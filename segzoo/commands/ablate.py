"""`segzoo ablate mask_rcnn|fcn [--data shapes] [--minutes M | --epochs N] [--studies ...]
[--seeds S] --out DIR` (see `segzoo.ablation`)."""

from __future__ import annotations


def run(args) -> int:
    from segzoo.ablation.runner import run_ablation

    run_ablation(
        args.family, out=args.out, studies=args.studies, minutes=args.minutes, epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch, seeds=args.seeds, data=args.data,
        data_dir=args.data_dir, eval_images=args.eval_images,
    )
    return 0
