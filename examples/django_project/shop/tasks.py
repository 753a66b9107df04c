try:
    from django.tasks import task            # Django 6
except ImportError:
    from django_tasks import task            # the django-tasks backport

from shop.models import Audit, Count, Order, Receipt


@task(queue_name='mail')
def send_receipt(order_id):
    """Runs in the transaction that deletes its row: the receipt commits with its completion."""
    order = Order.objects.get(id=order_id)
    receipt = Receipt.objects.create(order=order, text=f'{order.total} EUR, thank you')
    if order.email.endswith('.invalid'):   # the mail server refuses it: the receipt rolls back, a retry is recorded
        raise ValueError(f'cannot mail {order.email}')
    return receipt.id


@task(priority=10)
async def audit(order_id):
    """An async task: Django's async ORM calls run in the worker's thread, in the task's transaction."""
    order = await Order.objects.aget(id=order_id)
    await Audit.objects.acreate(order=order, note=f'total {order.total}')
    if order.total < 0:
        raise ValueError(f'order {order_id} has a negative total')


@task()
def count_orders():
    """A cron (TASKS' OPTIONS: every 10 minutes)."""
    Count.objects.create(orders=Order.objects.count())
