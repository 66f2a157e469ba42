"""The example shop: a Django project whose orders are fulfilled by a conveyor worker.

Importing the app here (as Celery's Django guide does) makes ``@shared_task`` tasks
send through it in the web process too.
"""

from .celery import app as celery_app

__all__ = ("celery_app",)
