"""The command-line scan that decides to monkey-patch for a green pool (Celery's
maybe_patch_concurrency reads the same spellings)."""

from __future__ import annotations

import pytest

from conveyor._early_patch import patch, pool_in_argv


@pytest.mark.parametrize(
    ("argv", "pool"),
    [
        (["-A", "proj", "worker", "-P", "gevent", "-c", "100"], "gevent"),
        (["-A", "proj", "worker", "-Peventlet"], "eventlet"),
        (["-A", "proj", "worker", "--pool", "gevent"], "gevent"),
        (["-A", "proj", "worker", "--pool=eventlet"], "eventlet"),
        (["-A", "proj", "worker", "-P", "threads", "-P", "gevent"], "gevent"),
        (["-A", "proj", "worker", "-c", "4"], None),
        (["-A", "proj", "worker", "-P"], None),
    ],
)
def test_the_pool_is_read_from_every_spelling_of_the_option(
    argv: list[str], pool: str | None
) -> None:
    assert pool_in_argv(argv) == pool


def test_patching_an_unknown_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="no monkey-patching for pool 'threads'"):
        patch("threads")
