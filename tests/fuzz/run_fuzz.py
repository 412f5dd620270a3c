"""Benchmark mode: ``MDMSIM_FUZZ_EXAMPLES=100000 python tests/fuzz/run_fuzz.py`` fuzzes every route with
about that many requests and prints one JSON line: ``{"requests": n, "5xx": 0, "2xx": …, "elapsed_s": …}``.

It runs the same pytest module CI runs (so there is one fuzzer), with the total raised.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    env = {**os.environ, "MDMSIM_FUZZ_EXAMPLES": os.environ.get("MDMSIM_FUZZ_EXAMPLES", "100000")}
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "pytest", str(HERE / "test_fuzz_routes.py"), "-q", "-s", "-p",
                          "no:cacheprovider"], cwd=HERE.parents[1], env=env, capture_output=True, text=True)
    found = re.findall(r'\{"routes"[^\n]*?\}', run.stdout)
    figures = json.loads(found[-1]) if found else {"requests": 0}
    figures.setdefault("5xx", 0)
    figures.update(failed=run.returncode != 0, elapsed_s=round(time.perf_counter() - started, 1))
    print(json.dumps(figures))
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
