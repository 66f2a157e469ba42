"""The coordination half runs every test twice per store: with the coordinator beside
its transport (the default, one store) and apart from it (``coordinator_url``)."""

from __future__ import annotations

import pytest

from conveyor.stores import coordinator_for
from conveyor.stores.coordination import Coordinator
from conveyor.stores.transport import Transport

from ..conftest import MakeCoordinator, MakeTransport


@pytest.fixture(params=["beside", "apart"])
def placement(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def make_coordinator(
    placement: str, make_transport: MakeTransport, make_apart_coordinator: MakeCoordinator
) -> MakeCoordinator:
    if placement == "apart":
        return make_apart_coordinator

    def beside() -> Coordinator:
        return coordinator_for(make_transport())

    return beside


@pytest.fixture
def coordinator(
    placement: str, transport: Transport, make_apart_coordinator: MakeCoordinator
) -> Coordinator:
    return coordinator_for(transport) if placement == "beside" else make_apart_coordinator()
