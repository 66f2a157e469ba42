"""``delay_on_commit``: hand a send to Django's ``transaction.on_commit``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...exceptions import ConfigurationError

__all__ = ["on_commit"]


def on_commit(send: Callable[[], Any]) -> None:
    """Run ``send`` when the current transaction of the default database commits (at
    once outside a transaction, in autocommit); never if it rolls back."""
    try:
        from django.db import transaction
    except ImportError:
        raise ConfigurationError(
            "delay_on_commit needs Django: pip install 'conveyor[django]'"
        ) from None
    transaction.on_commit(send)
