"""The shop's tasks: plain ``@shared_task`` functions, found by ``autodiscover_tasks``."""

import os
from typing import Any

from conveyor import shared_task

from .models import Order

# Database connections this process opened (Django's connection_created signal).
_opened = 0


def count_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    global _opened
    _opened += 1


@shared_task
def fulfil(order_id: int) -> str:
    """Mark the order fulfilled; it must exist (it was committed before the send)."""
    order = Order.objects.get(pk=order_id)
    order.status = "fulfilled"
    order.fulfilled_by = f"pid {os.getpid()}"
    order.save(update_fields=["status", "fulfilled_by"])
    return order.status


@shared_task
def count_orders() -> dict[str, int]:
    """How many orders there are, and how many connections this worker opened so far."""
    return {"orders": Order.objects.count(), "connections_opened": _opened}
