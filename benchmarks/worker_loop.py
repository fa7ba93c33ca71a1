"""The timing loop of a benchmark's worker process (one copy for every benchmark with workers).

A parent starts one worker per side (segzoo, torchvision, ...), reads the worker's header
line, then writes case names one a line; the worker runs each named case once and answers
one JSON line {"case": NAME, "seconds": wall time}. Interleaving the sides round by round
in the parent makes load changes hit both alike.
"""

from __future__ import annotations

import json
import sys
import time


def serve_timings(cases: dict, lines=None) -> int:
    """Times `cases[name]()` for each name read from `lines` (default stdin); returns 0."""
    for line in sys.stdin if lines is None else lines:
        name = line.strip()
        start = time.perf_counter()
        cases[name]()
        print(json.dumps({"case": name, "seconds": time.perf_counter() - start}), flush=True)
    return 0
