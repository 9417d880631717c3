"""Fail (exit 1) when the committed generated code does not match cluster.proto: `make lint`."""

from __future__ import annotations

import difflib
import sys

from discovery.proto.generate import PROTO_DIR, render


def stale() -> list[str]:
    """A short diff for each committed file that differs from a fresh protoc run."""
    problems = []
    for name, fresh in render().items():
        path = PROTO_DIR / name
        committed = path.read_text() if path.exists() else ""
        if committed == fresh:
            continue
        diff = difflib.unified_diff(
            committed.splitlines(),
            fresh.splitlines(),
            f"committed/{name}",
            f"regenerated/{name}",
            lineterm="",
            n=1,
        )
        problems.append("\n".join(list(diff)[:20]))
    return problems


def main() -> int:
    problems = stale()
    if not problems:
        print("discovery/proto: generated code is up to date")
        return 0
    print(
        "discovery/proto: generated code is stale or was edited by hand.\n"
        "Run `make proto` and commit the result. If cluster.proto did not change, the\n"
        "installed grpcio-tools differs from the one that generated the committed files.\n",
        file=sys.stderr,
    )
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
