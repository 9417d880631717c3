"""`make bench`: run the benchmarks, print a table, write bench/results/<name>.json.

python -m bench                 # everything that can run here
python -m bench http restart    # only these
python -m bench --quick         # smaller sizes, for a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import inspect
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
# Benchmarks that print a side-by-side table (the JSON file has every figure).
_MODULES = {
    "http": "bench.http_update",
    "grpc": "bench.grpc_update",
    "signed": "bench.signed_update",
    "workers": "bench.workers",
    "fanout": "bench.watch_fanout",
}


def _machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if "model name" in line), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average": os.getloadavg(),
    }


def _benchmarks(quick: bool) -> dict[str, Callable[[], Coroutine[Any, Any, dict[str, Any]]]]:
    def lazy(module: str, **kwargs: Any) -> Callable[[], Coroutine[Any, Any, dict[str, Any]]]:
        async def start() -> dict[str, Any]:
            # A benchmark's run() is a coroutine function, or plain for the in-process ones.
            result = importlib.import_module(module).run(**kwargs)
            if inspect.isawaitable(result):
                result = await result
            assert isinstance(result, dict)
            return result

        return start

    marks: dict[str, Callable[[], Coroutine[Any, Any, dict[str, Any]]]] = {
        "http": lazy("bench.http_update", **({"duration": 2.0, "rounds": 1} if quick else {})),
        "signed": lazy("bench.signed_update", **({"duration": 2.0, "rounds": 1} if quick else {})),
        "fanout": lazy(
            "bench.watch_fanout",
            **({"watchers": 500, "clusters": 50, "rate": 100.0, "duration": 5.0} if quick else {}),
        ),
        "domain": lazy("bench.domain"),
        "restart": lazy("bench.restart", affiliates=5_000 if quick else 100_000),
        "storm": lazy("bench.reconnect_storm", **({"streams": 2_000} if quick else {})),
    }
    if importlib.util.find_spec("bench.grpc_update") is not None:
        marks["grpc"] = lazy("bench.grpc_update", **({"duration": 2.0} if quick else {}))
    marks["workers"] = lazy("bench.workers", **({"duration": 2.0, "rounds": 1} if quick else {}))
    can_mesh = os.geteuid() == 0 and all(shutil.which(t) for t in ("wg", "wireguard-go", "ip"))
    if can_mesh and importlib.util.find_spec("bench.mesh") is not None:
        marks["mesh"] = lazy("bench.mesh", nodes=5 if quick else 20)
    return marks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args(argv)
    marks = _benchmarks(args.quick)
    unknown = set(args.names) - set(marks)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {sorted(marks)}")
    RESULTS.mkdir(exist_ok=True)
    machine = _machine()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}")
    for name in args.names or list(marks):
        started = time.monotonic()
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"\n== {name} == (load average at start: {load})", flush=True)
        try:
            result = asyncio.run(marks[name]())
        except Exception as exc:  # one failing benchmark must not hide the others
            print(f"  failed: {exc!r}", file=sys.stderr)
            continue
        report = {
            "benchmark": name,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.monotonic() - started, 1),
            "machine": machine,
            "quick": args.quick,
            "result": result,
        }
        (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
        table = getattr(sys.modules.get(_MODULES.get(name, "")), "table", None)
        print(table(result) if table is not None else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
