"""The workers' service opened in the gunicorn master before it forks
(inferd/server/prefork.py), and the holder calls it relies on: `preload` (a load nobody
is told of), `adopt` (a forked worker announces the model as its own) and `forget`.

The real fork, with real workers, is in tests/integration/test_prefork_server.py."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from inferd.common import metrics
from inferd.common.errors import InferdError
from inferd.common.settings import Settings
from inferd.model.loaded import LoadedModel
from inferd.reloading.reload import open_reloader
from inferd.server import prefork
from inferd.serving.holder import ModelHolder
from inferd.store.generation import GenerationCounter
from tests.fakes import ConstantModel, write_model
from tests.support import clean_env


@pytest.fixture
def compiled_slot(make_settings: Callable[..., Settings], model_path: Path,
                  forests: tuple[Any, Any]) -> Settings:
    settings = make_settings()
    write_model(model_path, forests[0])
    assert open_reloader(settings).run().status == "reloaded"
    return settings


@pytest.fixture
def no_prefork_service() -> Iterator[None]:
    yield
    prefork._service = None  # the module's state is the master's: none after a test


def holder_told(settings: Settings) -> tuple[ModelHolder, list[LoadedModel]]:
    reloader = open_reloader(settings)
    told: list[LoadedModel] = []
    holder = ModelHolder(reloader.store, GenerationCounter(reloader.store.layout.generation),
                         on_loaded=told.append)
    return holder, told


def test_preload_loads_without_telling_and_adopt_tells(compiled_slot: Settings) -> None:
    holder, told = holder_told(compiled_slot)
    holder.preload()
    model = holder.peek()
    assert model is not None and model.form == "compiled"
    assert told == []  # the master announces nothing
    holder.adopt()
    assert told == [model]
    assert holder.current() is model  # no second load: the counter has not moved


def test_forget_drops_the_model_and_the_next_request_loads_it_again(
        compiled_slot: Settings) -> None:
    holder, told = holder_told(compiled_slot)
    first = holder.current()
    holder.forget()
    assert holder.peek() is None
    again = holder.current()
    assert again is not first and again.generation == first.generation
    assert told == [first, again]


def test_adopt_without_a_model_tells_nothing(make_settings: Callable[..., Settings]) -> None:
    holder, told = holder_told(make_settings())
    holder.preload()  # nothing published
    holder.adopt()
    assert told == [] and holder.peek() is None


def test_the_master_holds_a_compiled_model_until_it_forks_its_last_worker(
        compiled_slot: Settings, no_prefork_service: None) -> None:
    service = prefork.open_service(compiled_slot)
    assert service.holder is not None
    assert service.holder.peek() is not None
    master = SimpleNamespace(num_workers=3, WORKERS={})
    for forked in range(3):
        prefork.before_fork(master)
        prefork._after_fork_in_master()  # what os.fork runs in the parent
        assert (service.holder.peek() is None) == (forked == 2)
        master.WORKERS[forked] = object()


def test_the_master_does_not_load_a_fallback_model(
        make_settings: Callable[..., Settings], model_path: Path,
        no_prefork_service: None) -> None:
    # A fallback slot would import its libraries into the master and so into every
    # worker; each worker loads it after the fork.
    settings = make_settings()
    write_model(model_path, ConstantModel(1))
    assert open_reloader(settings).run().status == "reloaded"
    service = prefork.open_service(settings)
    assert service.holder is not None and service.holder.peek() is None
    assert service.holder.current().form == "fallback"


def test_importing_the_gunicorn_settings_leaves_the_metrics_mode_undecided(
        make_settings: Callable[..., Settings]) -> None:
    # prometheus_client picks multiprocess mode when it is imported, from the
    # directory the master's on_starting exports: nothing may import it before.
    env = clean_env(INFERD_STATE_DIR=str(make_settings().state_dir), MODEL_SOURCE="local",
                    MODEL_PATH="/nonexistent/model.joblib")
    code = ("import json, sys; import inferd.gunicorn_conf; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('prometheus'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_only_inferds_app_gets_a_service_opened_in_the_master() -> None:
    # Another app under inferd's settings and hooks (the benchmarks' bare Falcon floor)
    # must not get a worker service, with its threads, in each of its workers.
    def server(app_uri: str | None, wsgi_app: str | None = None) -> Any:
        return SimpleNamespace(app=SimpleNamespace(app_uri=app_uri),
                               cfg=SimpleNamespace(wsgi_app=wsgi_app))

    assert prefork.serves_inferd(server("inferd.app:app"))
    assert prefork.serves_inferd(server(None, "inferd.app:app"))
    assert not prefork.serves_inferd(server("benchmarks.floor_app:app"))


def test_a_workers_own_fork_keeps_its_model(compiled_slot: Settings,
                                           no_prefork_service: None) -> None:
    # The after-fork hook is inherited by the workers: a worker's own fork (a pyfunc
    # model's multiprocessing, say) must not drop the worker's model.
    service = prefork.open_service(compiled_slot)
    assert service.holder is not None
    prefork.before_fork(SimpleNamespace(num_workers=1, WORKERS={}))
    prefork._master_pid = -1  # as in a worker: not the master's pid
    prefork._after_fork_in_master()
    assert service.holder.peek() is not None


def test_a_load_the_master_failed_is_tried_again_at_once_in_a_worker(
        compiled_slot: Settings) -> None:
    holder, told = holder_told(compiled_slot)
    store = open_reloader(compiled_slot).store
    arrays = store.layout.slot(1) / "compiled" / "arrays"
    damaged = next(arrays.iterdir())
    damaged.write_bytes(b"damaged")
    holder.preload()
    assert holder.peek() is None and holder.last_error is not None
    holder.adopt()  # in the worker, a failure the master met counts for nothing
    assert holder.last_error is None
    with pytest.raises(InferdError):
        holder.current()  # tried at once (not after the retry pause), and fails again
    assert holder._failures == 1 and told == []


def test_metrics_that_cannot_be_written_do_not_stop_a_model_serving(
        compiled_slot: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> None:
        raise OSError("metrics directory is read-only")

    monkeypatch.setattr(metrics, "slot_loaded", broken)
    holder, told = holder_told(compiled_slot)
    model = holder.current()
    assert told == [model]
