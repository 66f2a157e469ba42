"""Settings of the example shop. The database is SQLite; the environment may move it
(SHOP_DATABASE) and the broker (SHOP_BROKER_URL), as the tests do."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "example-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "orders",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "shop.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DATABASE", str(BASE_DIR / "db.sqlite3")),
        # The web process and the worker write the same file: wait for each other.
        "OPTIONS": {"timeout": 20},
        # 0: a connection lives for one request, or in the worker for one task
        # (conveyor closes it after each task, as Celery's Django fixup does).
        "CONN_MAX_AGE": 0,
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

# conveyor, read through app.config_from_object("django.conf:settings", namespace="CELERY")
CELERY_BROKER_URL = os.environ.get("SHOP_BROKER_URL", "redis://localhost:6379/0")
CELERY_TASK_TRACK_STARTED = True
