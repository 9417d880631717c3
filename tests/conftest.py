from __future__ import annotations

import pytest
from hypothesis import settings

pytest_plugins = ["tests.support.postgres"]

# Property tests check behaviour, never speed: on a shared 2-core machine under coverage an
# example can take longer than hypothesis' default 200 ms deadline without anything wrong.
settings.register_profile("project", deadline=None)
settings.load_profile("project")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
