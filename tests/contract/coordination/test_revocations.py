"""The revocation contract: shared, versioned, expiring, on every coordinator."""

from __future__ import annotations

import time

from ..conftest import MakeCoordinator


def test_revocations_are_shared_versioned_and_expire(make_coordinator: MakeCoordinator) -> None:
    writer, reader = make_coordinator(), make_coordinator()
    assert reader.revocations(0) is None  # nothing revoked yet: nothing to read
    writer.revoke(["a", "b"], ttl=60)
    first = reader.revocations(0)
    assert first is not None and first.revoked == {"a", "b"} and first.terminate == {}
    assert reader.revocations(first.version) is None  # unchanged: no re-read
    writer.revoke(["c"], ttl=60, terminate="SIGKILL")
    second = reader.revocations(first.version)
    assert second is not None and second.version > first.version
    assert second.revoked == {"a", "b", "c"} and second.terminate == {"c": "SIGKILL"}
    writer.revoke(["short"], ttl=0.001)

    time.sleep(0.05)
    writer.revoke(["later"], ttl=60)
    third = reader.revocations(second.version)
    assert third is not None and "short" not in third.revoked and "later" in third.revoked
