"""Fail (exit 1) when committed generated code does not match its .proto: `make lint`."""

from __future__ import annotations

import difflib
import sys

from discovery.proto.generate import PACKAGES, ROOT, ProtoPackage, render


def stale(package: ProtoPackage) -> list[str]:
    """A short diff for each committed file of `package` that differs from a fresh protoc run."""
    problems = []
    for name, fresh in render(package).items():
        path = ROOT / package.directory / name
        committed = path.read_text() if path.exists() else ""
        if committed == fresh:
            continue
        diff = difflib.unified_diff(
            committed.splitlines(),
            fresh.splitlines(),
            f"committed/{package.directory}/{name}",
            f"regenerated/{package.directory}/{name}",
            lineterm="",
            n=1,
        )
        problems.append("\n".join(list(diff)[:20]))
    return problems


def main() -> int:
    failed = False
    for package in PACKAGES:
        problems = stale(package)
        if not problems:
            print(f"{package.directory}: generated code is up to date")
            continue
        failed = True
        print(
            f"{package.directory}: generated code is stale or was edited by hand.\n"
            f"Run `make proto` and commit the result. If {package.source} did not change,\n"
            "the installed grpcio-tools differs from the one that generated the committed files.\n",
            file=sys.stderr,
        )
        for problem in problems:
            print(problem, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
