"""Fixtures for the HubSpot client tests."""

from __future__ import annotations

import pytest
from spoke_hubspot_testing import VirtualClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sleeps() -> VirtualClock:
    return VirtualClock()
