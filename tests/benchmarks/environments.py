"""Environments benchmark: how long a workflow's packages take to be ready, cold and warm.

Not part of the test run. Run it with `.venv/bin/python tests/benchmarks/environments.py`
(options `--repeat N`, `--package SPEC`; about 10 s with the defaults, needs PyPI). Each round
uses a fresh environments folder, so uv's cache starts empty:

1. Cold: resolve (``uv pip compile`` against PyPI) and build (``uv venv`` + ``uv pip install``)
   the environment of a workflow asking for ``requests``.
2. Rebuild with a warm uv cache: the same lock after its environment was swept (what a new
   instance or a sweep costs when the wheels are cached).
3. Warm: a second resolve of the same inputs (from the cache) and ensure() of the ready
   environment, in this instance and in a new one on the same folder (another process of the
   platform). Goal: under 50 ms for warm reuse.

Figures are printed with PASS or MISS against the goal; nothing fails the process.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from slipway.environments import Environments, requirements_of

WARM_GOAL_SECONDS = 0.050
TIMEOUT = 600.0


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def one_round(package: str) -> dict[str, float]:
    source = f'# /// script\n# dependencies = ["{package}"]\n# ///\n'.encode()
    requirements = requirements_of(source, "workflows/bench.py", None)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="slipway-env-bench-") as folder:
        root = Path(folder) / "environments"
        environments = Environments(root)

        started = time.perf_counter()
        lock = environments.resolve(requirements, timeout=TIMEOUT)
        figures["cold resolve"] = time.perf_counter() - started
        started = time.perf_counter()
        environments.ensure(lock, log=lambda _line: None, timeout=TIMEOUT)
        figures["cold build"] = time.perf_counter() - started
        figures["cold total"] = figures["cold resolve"] + figures["cold build"]

        environments.sweep((), idle_seconds=0)
        started = time.perf_counter()
        environments.ensure(lock, log=lambda _line: None, timeout=TIMEOUT)
        figures["rebuild, warm uv cache"] = time.perf_counter() - started

        started = time.perf_counter()
        environments.resolve(requirements, timeout=TIMEOUT)
        figures["warm resolve"] = time.perf_counter() - started
        started = time.perf_counter()
        environments.ensure(lock, log=lambda _line: None, timeout=TIMEOUT)
        figures["warm ensure"] = time.perf_counter() - started

        restarted = Environments(root)
        started = time.perf_counter()
        restarted.ensure(
            restarted.resolve(requirements, timeout=TIMEOUT), log=lambda _line: None, timeout=TIMEOUT
        )
        figures["warm resolve + ensure, new instance"] = time.perf_counter() - started
        figures["packages"] = len(lock.packages)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--package", default="requests")
    options = parser.parse_args()
    rounds = [one_round(options.package) for _ in range(options.repeat)]
    print(
        f"environment of a workflow asking for {options.package!r} ({int(rounds[0]['packages'])} packages), {options.repeat} rounds"
    )
    for name in rounds[0]:
        if name == "packages":
            continue
        values = [r[name] for r in rounds]
        line = f"  {name:40} median {_ms(statistics.median(values)):>10}   min {_ms(min(values)):>10}"
        if name.startswith("warm"):
            line += (
                "   "
                + ("PASS" if statistics.median(values) < WARM_GOAL_SECONDS else "MISS")
                + " (goal < 50 ms)"
            )
        print(line)


if __name__ == "__main__":
    main()
