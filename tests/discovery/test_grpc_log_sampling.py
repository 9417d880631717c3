"""Per-call log lines are sampled as upstream samples them; see interceptors.LogSampler."""

from __future__ import annotations

from discovery.grpc.interceptors import LogSampler


def test_first_lines_of_each_second_then_every_nth() -> None:
    sampler = LogSampler(initial=3, thereafter=5)
    allowed = [sampler.allow("Update", 10.2) for _ in range(13)]
    assert allowed == [True] * 3 + [False] * 4 + [True] + [False] * 4 + [True]


def test_each_method_and_second_counts_alone() -> None:
    sampler = LogSampler(initial=1, thereafter=100)
    assert sampler.allow("Update", 1.0)
    assert not sampler.allow("Update", 1.5)
    assert sampler.allow("List", 1.5)
    assert sampler.allow("Update", 2.0)
