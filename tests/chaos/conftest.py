"""Fixtures for the chaos tests: the test apps, connected to the suite's Redis."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

from ..apps import basic as basic_module
from ..apps import tunable as tunable_module
from ..support import connected


@pytest.fixture
def basic(redis_url: str) -> Iterator[ModuleType]:
    """tests.apps.basic, its app sending to the test's clean Redis database."""
    with connected(basic_module.app, redis_url):
        yield basic_module


@pytest.fixture
def tunable(redis_url: str) -> Iterator[ModuleType]:
    """tests.apps.tunable, its app sending to the test's clean Redis database."""
    with connected(tunable_module.app, redis_url):
        yield tunable_module
