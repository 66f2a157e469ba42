"""Every setting name conveyor accepts either works (some module reads it) or warns
"not supported by conveyor" when set to anything but its default: none is silently
ignored."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.config import DEFAULTS, NOT_SUPPORTED

SOURCE = Path(__file__).parents[2] / "src" / "conveyor"


def _readers(name: str) -> list[Path]:
    """Modules other than config.py that read ``name`` (``conf.name``, ``conf["name"]``
    or the name as a string passed to the settings)."""
    pattern = re.compile(r"(\.|[\"'])" + re.escape(name) + r"\b")
    return [
        path
        for path in SOURCE.rglob("*.py")
        if path.name != "config.py" and pattern.search(path.read_text())
    ]


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_each_setting_is_read_or_warned_about(name: str) -> None:
    if name in NOT_SUPPORTED:
        assert not _readers(name), f"{name} is read somewhere: take it out of NOT_SUPPORTED"
        app = Conveyor("settings")
        other = object()  # a value no default equals
        with pytest.warns(UserWarning, match=f"'{name}' is not supported by conveyor: "):
            app.conf[name] = other
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            app.conf[name] = DEFAULTS[name]  # the default is what conveyor does: silent
    else:
        assert _readers(name), f"{name} is accepted but nothing reads it"


@pytest.mark.parametrize(
    "name",
    [
        "task_annotations",
        "worker_log_format",
        "worker_task_log_format",
        "worker_send_task_events",
        "broker_transport_options",
        "result_extended",
    ],
)
def test_the_names_the_issue_found_ignored_are_no_longer_silent(name: str) -> None:
    assert name in NOT_SUPPORTED or _readers(name)


def test_an_old_upper_case_name_warns_too() -> None:
    app = Conveyor("settings")
    with pytest.warns(UserWarning, match="'CELERY_ANNOTATIONS' is not supported by conveyor"):
        app.config_from_object({"CELERY_ANNOTATIONS": {"tasks.add": {"rate_limit": "1/s"}}})
