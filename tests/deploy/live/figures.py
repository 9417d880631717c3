"""The figures a live deployment run measures (build times, sizes, failover), collected here
and printed in the terminal summary by conftest.py; docs/operations.md quotes them."""

from __future__ import annotations

FIGURES: list[str] = []


def record(line: str) -> None:
    FIGURES.append(line)
