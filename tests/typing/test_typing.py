from __future__ import annotations

from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api", reason="mypy is a dev dependency")


@pytest.mark.timeout(300)
def test_user_code_type_checks_against_task_signatures() -> None:
    target = Path(__file__).with_name("check_types.py")
    stdout, stderr, status = api.run(["--strict", "--no-incremental", str(target)])
    assert status == 0, stdout + stderr
