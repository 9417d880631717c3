"""Shared by the agent config tests: a minimal valid config and helpers to extend and fail it."""

from __future__ import annotations

import base64
import textwrap

import pytest

from kubespan.config import ConfigError, load_config

SECRET = base64.b64encode(bytes(range(32))).decode()
CLUSTER_ID = "8XuV9TZHW08DOk3bVxQjH9ih_TBKjnh-j44tsCLSBzo="

MINIMAL = f"""
cluster:
  id: {CLUSTER_ID}
  secret: {SECRET}
discovery:
  endpoints: [http://discovery.example:3001]
"""


def with_section(extra: str) -> str:
    return MINIMAL + textwrap.dedent(extra)


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(text)
    return str(info.value)
