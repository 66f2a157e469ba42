"""The example Django project (examples/django_project, SQLite) with a real worker on the
private redis-server: settings read with namespace="CELERY", tasks autodiscovered from
INSTALLED_APPS, delay_on_commit sending only what commits, and the worker closing its
database connections around each task as Celery's Django fixup does."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ..support import connected, wait_for

pytestmark = pytest.mark.timeout(60)

PROJECT = Path(__file__).resolve().parents[2] / "examples" / "django_project"


@pytest.fixture(scope="module")
def django_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Django set up in this process (once: its settings are process-wide) on a fresh
    SQLite file, migrated; yields the environment a worker of the project needs."""
    pytest.importorskip("django")  # in the dev extra: CI has it
    database = str(tmp_path_factory.mktemp("shop") / "shop.sqlite3")
    env = {
        "DJANGO_SETTINGS_MODULE": "shop.settings",
        "SHOP_DATABASE": database,
        "PYTHONPATH": os.pathsep.join([str(PROJECT), str(PROJECT.parents[1])]),
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update({k: v for k, v in env.items() if k != "PYTHONPATH"})
    sys.path.insert(0, str(PROJECT))
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        yield env
    finally:
        sys.path.remove(str(PROJECT))
        for name, value in saved.items():
            if name == "PYTHONPATH":
                continue
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def shop(django_project: dict[str, str], redis_url: str) -> Iterator[ModuleType]:
    import shop.celery

    with connected(shop.celery.app, redis_url):
        yield shop.celery


def _worker(spawn_worker: Any, redis_url: str, env: dict[str, str], *args: str) -> Any:
    return spawn_worker("shop", redis_url, *args, env={**env, "SHOP_BROKER_URL": redis_url})


def test_settings_are_read_from_django_with_the_celery_namespace(
    shop: ModuleType, redis_url: str
) -> None:
    app = shop.app
    assert app.conf.task_track_started is True  # CELERY_TASK_TRACK_STARTED
    app.import_default_modules()  # autodiscover_tasks(): orders/tasks.py of INSTALLED_APPS
    assert {"orders.tasks.fulfil", "orders.tasks.count_orders"} <= set(app.tasks)


def test_an_order_is_fulfilled_after_commit_and_a_rolled_back_one_is_never_sent(
    shop: ModuleType, redis_url: str, spawn_worker: Any, django_project: dict[str, str]
) -> None:
    from django.test import Client
    from orders.models import Order

    worker = _worker(spawn_worker, redis_url, django_project, "-c", "2")  # prefork
    client = Client()
    placed = client.post("/orders/", {"item": "teapot"})
    assert placed.status_code == 201
    order_id = placed.json()["id"]
    declined = client.post("/orders/", {"item": "kettle", "pay": "no"})
    assert declined.status_code == 402

    wait_for(
        lambda: Order.objects.get(pk=order_id).status == "fulfilled", 15, what="the fulfilment"
    )
    assert client.get(f"/orders/{order_id}/").json()["status"] == "fulfilled"
    assert not Order.objects.filter(item="kettle").exists()  # rolled back
    assert Order.objects.count() == 1
    # Only the committed order's task was ever sent: a task sent after both has run, so
    # the worker would have received a second fulfil by now.
    from orders.tasks import count_orders

    assert count_orders.delay().get(timeout=15)["orders"] == 1
    assert worker.output().count("Task orders.tasks.fulfil[") == 2  # received, succeeded
    assert "DoesNotExist" not in worker.output()


def test_the_worker_closes_the_database_connection_around_each_task(
    shop: ModuleType, redis_url: str, spawn_worker: Any, django_project: dict[str, str]
) -> None:
    from orders.tasks import count_orders

    # One thread runs every task: without the fixup its connection would live on
    # (one opened in all); with CONN_MAX_AGE=0 each task opens its own.
    _worker(spawn_worker, redis_url, django_project, "-P", "solo")
    opened = [count_orders.delay().get(timeout=15)["connections_opened"] for _ in range(3)]
    assert opened[1] == opened[0] + 1 and opened[2] == opened[1] + 1, opened
