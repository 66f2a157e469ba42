"""The conveyor app of the shop, written as Celery's Django guide writes ``proj/celery.py``
(only the import differs). Start a worker with::

    conveyor -A shop worker -l info
"""

import os

from conveyor import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

app = Celery("shop")
# Every CELERY_* setting of settings.py: CELERY_BROKER_URL -> broker_url, ...
app.config_from_object("django.conf:settings", namespace="CELERY")
# orders/tasks.py, and the tasks.py of every other installed app.
app.autodiscover_tasks()
