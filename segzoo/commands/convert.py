"""`segzoo convert --from torchvision|caffe --arch NAME --weights FILE --out OUT`."""

from __future__ import annotations


def run(args) -> int:
    from segzoo.weights import convert

    path = convert(args.source, args.arch, args.weights, args.out)
    print(f"converted {args.weights} ({args.source} {args.arch}) to {path}")
    return 0
