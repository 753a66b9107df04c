from django.db import transaction
from django.http import JsonResponse
from django.views.decorators.http import require_POST

from shop.models import Order
from shop.tasks import send_receipt


@require_POST
def place_order(request):
    with transaction.atomic():   # the order and its task commit together, or neither does
        order = Order.objects.create(email=request.POST['email'], total=int(request.POST['total']))
        result = send_receipt.enqueue(order.id)
    return JsonResponse({'order': order.id, 'task': result.id}, status=201)
