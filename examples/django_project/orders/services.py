from django.db import transaction

from .models import Order
from .tasks import fulfil


class PaymentDeclined(Exception):
    pass


def place_order(item: str, pay: bool = True) -> Order:
    """Create the order and have it fulfilled once the transaction commits; a declined
    payment rolls the order back, and nothing is sent."""
    with transaction.atomic():
        order = Order.objects.create(item=item)
        fulfil.delay_on_commit(order.pk)
        if not pay:
            raise PaymentDeclined(item)
    return order
