"""Django, with Celery's names (``celery.contrib.django`` and its Django fixup).

The project's ``proj/celery.py``, as Celery's documentation writes it::

    import os
    from conveyor import Celery

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
    app = Celery("proj")
    app.config_from_object("django.conf:settings", namespace="CELERY")  # CELERY_BROKER_URL
    app.autodiscover_tasks()  # <app>.tasks of every INSTALLED_APPS entry

- ``task.delay_on_commit(...)`` / ``task.apply_async_on_commit(...)``: sent when the
  current transaction commits, never if it rolls back (transaction.py).
- In a worker started with ``DJANGO_SETTINGS_MODULE`` set (fixup.py): ``django.setup()``
  before the task modules are imported, the worker's database connections closed before
  it forks or starts its loops, and stale connections closed before and after each task
  (``close_old_connections``, as Celery's ``DjangoWorkerFixup`` does), so a connection
  that the database dropped or that passed ``CONN_MAX_AGE`` never fails a task.
"""
