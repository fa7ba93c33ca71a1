"""What machine a benchmark ran on: CPU model, its ISA, threads, library versions.

    from machine import describe_machine, cpu_isa
    print(describe_machine())
    # machine: AMD EPYC 9B14 | ISA: AVX512-BF16 AVX512F AVX2 (no AMX) | bf16 matmul/conv: ...
    cpu_isa()   # {"amx_bf16": False, "avx512_bf16": True, ..., "best": "AVX512-BF16"}

Every benchmark prints this first, so a figure is never read without the
machine that produced it: bfloat16 pays only with AMX (Intel Sapphire Rapids
and later) or AVX512-BF16 (Cooper Lake, AMD Zen 4 and later); on AVX2-only
CPUs oneDNN emulates it and float32 is the fast path. Library versions are
read from the installed distributions (torch is not imported here).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform

# /proc/cpuinfo flag -> the name benchmarks print, best first.
ISA_FLAGS = (
    ("amx_bf16", "AMX-BF16"),
    ("amx_int8", "AMX-INT8"),
    ("avx512_bf16", "AVX512-BF16"),
    ("avx512_vnni", "AVX512-VNNI"),
    ("avx512f", "AVX512F"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx2", "AVX2"),
    ("fma", "FMA"),
)
LIBRARIES = ("tensorflow", "keras", "numpy", "onnxruntime", "tf2onnx", "torch", "torchvision")


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, flags


def cpu_isa() -> dict:
    """Which of `ISA_FLAGS` the CPU reports, and "best": the one that decides bfloat16 speed."""
    _, flags = _cpuinfo()
    isa = {flag: flag in flags for flag, _ in ISA_FLAGS}
    if isa["amx_bf16"]:
        best = "AMX"
    elif isa["avx512_bf16"]:
        best = "AVX512-BF16"
    elif isa["avx512f"]:
        best = "AVX512F"
    elif isa["avx2"]:
        best = "AVX2"
    else:
        best = "baseline"
    isa["best"] = best
    isa["bfloat16_hardware"] = best in ("AMX", "AVX512-BF16")
    return isa


def library_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def thread_counts() -> dict:
    counts = {"cpu_count": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        counts["usable_cpus"] = len(os.sched_getaffinity(0))
    for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                 "TF_ENABLE_ONEDNN_OPTS"):
        if os.environ.get(name):
            counts[name] = os.environ[name]
    return counts


def machine_info() -> dict:
    model, _ = _cpuinfo()
    return {"cpu": model, "isa": cpu_isa(), "threads": thread_counts(),
            "versions": library_versions()}


def describe_machine() -> str:
    """One block of text: CPU, ISA, threads, versions (the benchmarks' first lines)."""
    info = machine_info()
    isa = info["isa"]
    present = [name for flag, name in ISA_FLAGS if isa[flag]]
    amx = "" if isa["amx_bf16"] else " (no AMX)"
    bf16 = ("bfloat16 runs on hardware" if isa["bfloat16_hardware"] else
            "no bfloat16 hardware: bfloat16 is emulated, float32 is the fast path")
    threads = ", ".join(f"{k}={v}" for k, v in info["threads"].items())
    versions = " ".join(f"{k}={v}" for k, v in info["versions"].items())
    return (f"machine: {info['cpu']} | ISA: {' '.join(present) or 'none reported'}{amx} | "
            f"best: {isa['best']}; {bf16}\n"
            f"threads: {threads}\n"
            f"versions: {versions}")


if __name__ == "__main__":
    print(describe_machine())
