"""Events shared by the codec tests, with the constants their known-answer vectors use."""

from __future__ import annotations

from datetime import UTC, datetime

from membership.model import Affiliate, Endpoint
from tests.membership.strategies import T0, US

T0_MICROS = 1_704_067_200_000_000
MAX_MICROS = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z
MIN_MICROS = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

AFFILIATE = Affiliate("a", b"\x00\xff", (Endpoint(b"e1", T0 + US),), T0)
