"""Configuration never falls back silently (issue 10): CELERY_-prefixed new-style names
in a plain module are read, broker settings conveyor cannot read are refused, the
embedded broker is announced where it is used; autodiscover_tasks as Celery's."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from conveyor import Conveyor
from conveyor.exceptions import ConfigurationError


def test_celery_prefixed_names_in_a_plain_module_are_read() -> None:
    app = Conveyor("cfg", set_as_current=False)
    module = SimpleNamespace(
        CELERY_BROKER_URL="redis://broker.example:6379/3",
        CELERY_RESULT_BACKEND="redis://results.example:6379/4",
        CELERY_TASK_ALWAYS_EAGER=True,
        CELERY_WORKER_CONCURRENCY=3,
        DEBUG=True,  # not a setting: ignored
    )
    app.config_from_object(module)
    assert app.broker_url == "redis://broker.example:6379/3"
    assert app.backend_url == "redis://results.example:6379/4"
    assert app.conf.task_always_eager is True and app.conf.worker_concurrency == 3
    assert "debug" not in app.conf


def test_an_unknown_celery_prefixed_name_warns() -> None:
    app = Conveyor("cfg", set_as_current=False)
    with pytest.warns(UserWarning, match="did you mean 'broker_url'"):
        app.config_from_object({"CELERY_BROKER_UR": "redis://x"})


@pytest.mark.parametrize("name", ["broker_host", "BROKER_HOST", "broker_read_url"])
def test_broker_settings_conveyor_cannot_read_are_refused(name: str) -> None:
    app = Conveyor("cfg", set_as_current=False)
    with pytest.raises(ConfigurationError, match="broker_url"):
        app.config_from_object({name: "somewhere"})


def test_celery_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://from-celery-env:6379/0")
    assert Conveyor("env", set_as_current=False).broker_url == "redis://from-celery-env:6379/0"
    monkeypatch.setenv("CONVEYOR_BROKER_URL", "redis://from-conveyor-env:6379/0")
    assert Conveyor("env", set_as_current=False).broker_url == "redis://from-conveyor-env:6379/0"


def test_the_embedded_broker_is_announced_once_by_a_sender(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for variable in ("CONVEYOR_BROKER_URL", "CELERY_BROKER_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path))
    app = Conveyor("fallback", set_as_current=False)
    with caplog.at_level(logging.WARNING, logger="conveyor"):
        assert app.broker_url == f"sqlite:///{tmp_path / 'broker.db'}"
        assert app.broker_url == f"sqlite:///{tmp_path / 'broker.db'}"
    lines = [r.getMessage() for r in caplog.records if "embedded SQLite" in r.getMessage()]
    assert lines == [
        f"no broker_url set: using the embedded SQLite broker at {tmp_path / 'broker.db'}"
    ]
    named = Conveyor("named", broker="memory://x", set_as_current=False)
    caplog.clear()
    assert named.broker_url == "memory://x" and not caplog.records


@pytest.fixture
def packages(tmp_path: Path) -> Iterator[Path]:
    """Two packages on sys.path: one with a tasks module, one without."""
    for name, has_tasks in (("shop_app", True), ("blog_app", False)):
        package = tmp_path / name
        package.mkdir()
        (package / "__init__.py").write_text("")
        if has_tasks:
            (package / "tasks.py").write_text("IMPORTED = True\n")
            (package / "jobs.py").write_text("IMPORTED = True\n")
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith(("shop_app", "blog_app"))]:
            del sys.modules[name]


def test_autodiscover_tasks_force_imports_now(packages: Path) -> None:
    app = Conveyor("disc", set_as_current=False)
    app.autodiscover_tasks(["shop_app", "blog_app"], related_name="jobs", force=True)
    assert "shop_app.jobs" in sys.modules and "shop_app.tasks" not in sys.modules


def test_autodiscover_tasks_waits_for_the_worker_without_force(packages: Path) -> None:
    app = Conveyor("disc", set_as_current=False)
    app.autodiscover_tasks(lambda: ["shop_app", "blog_app"])
    assert "shop_app.tasks" not in sys.modules  # Django's registry may not be ready yet
    app.import_default_modules()  # what the worker does at start
    assert "shop_app.tasks" in sys.modules
