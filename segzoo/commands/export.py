"""`segzoo export --checkpoint CKPT --out PATH [--format saved_model|tflite] ...`."""

from __future__ import annotations


def run(args) -> int:
    from segzoo.export import export_checkpoint

    path = export_checkpoint(
        args.checkpoint,
        args.out,
        format=args.format,
        max_detections=args.max_detections,
        serving_layout=args.serving_layout,
        quantize=args.quantize,
        precision=getattr(args, "precision", None),
        calibration_data=getattr(args, "calibration_data", None),
        data_dir=getattr(args, "data_dir", None),
        calibration_images=getattr(args, "calibration_images", None),
    )
    print(f"exported {args.checkpoint} as {args.format} to {path}")
    return 0
