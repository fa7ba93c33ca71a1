"""A quiet TensorFlow start-up for the command line.

Importing TensorFlow and enumerating devices prints start-up lines from C++
before any Python logging exists: `cudart_stub.cc ... Could not find cuda
drivers`, `cuda_platform.cc ... failed call to cuInit` (at error level, on a
machine that simply has no GPU), oneDNN and CPU-instruction notices, the
absl pre-init banner, factory-registration messages. `start_tensorflow(verbose=False)`
runs that start-up with the process's stderr (file descriptor 2) captured,
then writes back every captured line that is not one of those known notices,
so real errors still reach the terminal. It also sets TensorFlow's C++ log
level to 2 (warnings and info off, errors on) unless the user set
`TF_CPP_MIN_LOG_LEVEL`, and the Python `absl` / `tensorflow` loggers to errors.
`segzoo --verbose ...` leaves everything as TensorFlow prints it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

# Start-up notices of a CPU-only (or GPU) machine: not errors a user can act on.
STARTUP_NOISE = tuple(re.compile(pattern) for pattern in (
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"cudart_stub\.cc",
    r"cuInit",
    r"cuda_(platform|executor|diagnostics|dnn|fft|blas)\.cc",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation_placer\.cc",
    r"oneDNN custom operations are on",
    r"cpu_feature_guard\.cc",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"To enable the following instructions",
    r"rebuild TensorFlow with the appropriate compiler flags",
    r"TF-TRT Warning",
    r"port\.cc:\d+\] oneDNN",
    r"Could not find cuda drivers",
    r"kernel driver does not appear to be running",
    r"retrieving CUDA diagnostic information",
))


def is_startup_noise(line: str) -> bool:
    return any(pattern.search(line) for pattern in STARTUP_NOISE)


@contextlib.contextmanager
def _captured_stderr_fd():
    """Redirects file descriptor 2 into a temporary file; yields a list filled with its lines."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines.extend(capture.read().decode("utf-8", "replace").splitlines(keepends=True))


def start_tensorflow(verbose: bool = False) -> None:
    """Imports TensorFlow and Keras and initialises the devices, quietly unless `verbose`."""
    if verbose:
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices()
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _captured_stderr_fd() as lines:
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices()  # where cuInit runs
    for line in lines:
        if line.strip() and not is_startup_noise(line):
            sys.stderr.write(line)
    sys.stderr.flush()
    import logging

    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
