from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET, require_POST

from .models import Order
from .services import PaymentDeclined, place_order


@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    try:
        order = place_order(request.POST["item"], pay=request.POST.get("pay") != "no")
    except PaymentDeclined:
        return JsonResponse({"error": "payment declined"}, status=402)
    return JsonResponse({"id": order.pk, "status": order.status}, status=201)


@require_GET
def show_order(request: HttpRequest, order_id: int) -> JsonResponse:
    order = get_object_or_404(Order, pk=order_id)
    return JsonResponse({"id": order.pk, "item": order.item, "status": order.status})
