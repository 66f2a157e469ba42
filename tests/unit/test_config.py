from __future__ import annotations

import types

import pytest

from conveyor import Conveyor
from conveyor.config import Settings


def test_defaults_match_celery() -> None:
    conf = Settings()
    assert conf.task_default_queue == "celery"
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.result_expires == 86400.0
    assert conf.task_acks_late is True


def test_old_upper_case_names_are_read_by_config_from_object() -> None:
    module = types.SimpleNamespace(
        BROKER_URL="redis://example:6379/1",
        CELERY_RESULT_BACKEND="redis://example:6379/2",
        CELERY_TASK_SERIALIZER="msgpack",
        CELERYD_CONCURRENCY=3,
        SOME_OTHER_CONSTANT=1,
    )
    app = Conveyor("t", set_as_current=False)
    app.config_from_object(module)
    assert app.conf.broker_url == "redis://example:6379/1"
    assert app.conf.result_backend == "redis://example:6379/2"
    assert app.conf.task_serializer == "msgpack"
    assert app.conf.worker_concurrency == 3
    assert "SOME_OTHER_CONSTANT" not in app.conf


def test_django_style_namespace() -> None:
    settings = {
        "CELERY_BROKER_URL": "redis://x/0",
        "CELERY_TASK_TRACK_STARTED": True,
        "DEBUG": True,
    }
    app = Conveyor("t", set_as_current=False)
    app.config_from_object(settings, namespace="CELERY")
    assert app.conf.broker_url == "redis://x/0"
    assert app.conf.task_track_started is True
    assert "DEBUG" not in app.conf


def test_config_from_object_by_dotted_name(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = Conveyor("t", set_as_current=False)
    app.config_from_object("tests.unit.celeryconfig_sample")
    assert app.conf.task_default_queue == "from-module"
    assert app.conf.result_expires == 60


def test_unknown_setting_warns_with_the_closest_name() -> None:
    app = Conveyor("t", set_as_current=False)
    with pytest.warns(UserWarning, match="did you mean 'task_serializer'"):
        app.conf.update(task_serialiser="json")


def test_environment_supplies_urls_unless_set_in_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_BROKER_URL", "redis://from-env:6379/0")
    monkeypatch.setenv("CONVEYOR_RESULT_BACKEND", "redis://from-env:6379/5")
    app = Conveyor("t", set_as_current=False)
    assert app.broker_url == "redis://from-env:6379/0"
    assert app.backend_url == "redis://from-env:6379/5"
    explicit = Conveyor("t", broker="redis://code:6379/0", set_as_current=False)
    assert explicit.broker_url == "redis://code:6379/0"


def test_attribute_and_item_access_agree() -> None:
    conf = Settings()
    conf.task_track_started = True
    assert conf["task_track_started"] is True
    with pytest.raises(AttributeError):
        _ = conf.no_such_setting
