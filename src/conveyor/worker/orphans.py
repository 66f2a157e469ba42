"""No orphans: a child process that outlives its parent would run tasks whose leases
nobody renews (or serve metrics for a worker that is gone), so every child conveyor
forks asks Linux to signal it when its parent dies."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGKILL) -> None:  # pragma: no cover - in the child
    """Have ``signum`` sent to this process when its parent dies (Linux ``prctl``;
    a no-op elsewhere); exit at once if the parent is already gone."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)
    if os.getppid() == 1:
        os._exit(1)
