"""Fixtures shared by the integration tests, and the hook that attaches the logs of
the servers running at the time to a failed test's report. The process handling
lives in `servers.py`; the gunicorn servers are module fixtures of each test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.servers import LIVE, MlflowServer, start_mlflow, stop_mlflow
from tests.support import OFFLINE_ENV


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        for process in LIVE:
            report.sections.append((f"{process.name} log ({process.log_path})",
                                    process.log_tail()))


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real `mlflow server` on loopback with a SQLite backend, for the whole session.

    Also switches MLflow's telemetry off in this process, which registers models into it.
    """
    server = start_mlflow(tmp_path_factory.mktemp("mlflow"))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in OFFLINE_ENV.items():
            mp.setenv(key, value)
        yield server
    stop_mlflow(server)
