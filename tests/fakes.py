"""Named fakes, in one place. Models are real scikit-learn objects or tiny classes
that pickle by reference to this module; storage is never faked."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from typing import Any

import joblib
import numpy as np


class ExplodingModel:
    """Loads fine, fails its smoke prediction: a 'bad new version'."""

    n_features_in_ = 4

    def predict(self, rows: np.ndarray) -> np.ndarray:
        raise RuntimeError("this model is broken on purpose")


class ConstantModel:
    """Predicts `value` for every row; lets a test tell versions apart by output."""

    n_features_in_ = 4

    def __init__(self, value: int) -> None:
        self.value = value

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.full(len(rows), self.value)


def iris_forest(n_estimators: int = 5, seed: int = 0) -> Any:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    features, target = load_iris(return_X_y=True)
    return RandomForestClassifier(n_estimators=n_estimators, random_state=seed).fit(
        features, target
    )


def write_model(path: Path, model: object) -> Path:
    """Save `model` with joblib at `path` (atomically, as an operator's deploy would)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    joblib.dump(model, tmp)
    tmp.replace(path)
    return path


def colour_frame(rows: int = 60) -> tuple[Any, Any]:
    """A DataFrame with a string, a float and an integer column, and a target."""
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"colour": rng.choice(["red", "green", "blue"], rows),
                          "size": rng.normal(size=rows) * 10,
                          "count": rng.integers(0, 5, rows)})
    target = ((frame["colour"] == "red") | (frame["size"] > 5)).astype(int)
    return frame, target


def colour_pipeline() -> tuple[Any, Any]:
    """A pipeline MLflow serves with a DataFrame only: a ColumnTransformer selecting
    columns by name, one-hot encoding a string column; and its training frame."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, target = colour_frame()
    encode = ColumnTransformer([("colour", OneHotEncoder(handle_unknown="ignore"), ["colour"]),
                                ("numbers", StandardScaler(), ["size", "count"])])
    return make_pipeline(encode, LogisticRegression()).fit(frame, target), frame


def save_mlflow_model(path: Path, model: Any, **kwargs: Any) -> Path:
    """Write `model` as an MLflow model directory with mlflow.sklearn.save_model
    (cloudpickle; `kwargs`: signature, input_example, pyfunc_predict_fn...)."""
    import warnings

    import mlflow.sklearn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Naming the requirements skips MLflow inferring them in a subprocess (~15 s).
        mlflow.sklearn.save_model(model, str(path), serialization_format="cloudpickle",
                                  pip_requirements=["scikit-learn"], **kwargs)
    return path


class ManualClock:
    """A monotonic clock that moves only when a test calls `advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class StalledRegistry:
    """A loopback TCP server that accepts connections and never answers: a registry
    that hangs. Use as a context manager; `url` is its http:// address."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            self._held.append(conn)  # keep it open, read nothing, answer nothing

    def __enter__(self) -> StalledRegistry:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._sock.close()
        self._thread.join(5)
        for conn in self._held:
            conn.close()


class FakeRegistry:
    """A model registry in memory, implementing `inferd.reloading.registry.resolver.ModelRegistry`
    (for the resolver's rules) and served over MLflow's REST routes by `RestStub`."""

    shown_uri = "fake://registry"

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], Any] = {}
        self.aliases: dict[tuple[str, str], str] = {}

    def add(self, name: str, version: int, stage: str = "None", run_id: str = "",
            source: str = "") -> None:
        from inferd.reloading.registry.base import RegistryVersion

        self.versions[name, str(version)] = RegistryVersion(
            str(version), run_id, source or f"models:/m-{version}", stage)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.aliases[name, alias] = str(version)

    def _refuse(self, what: str) -> Exception:
        from inferd.reloading.registry.base import RegistryRefused

        return RegistryRefused(f"RESOURCE_DOES_NOT_EXIST: {what} not found")

    def get_version(self, name: str, version: str) -> Any:
        import dataclasses

        found = self.versions.get((name, version))
        if found is None:
            raise self._refuse(f"version {version} of {name}")
        aliases = tuple(a for (n, a), v in self.aliases.items() if n == name and v == version)
        return dataclasses.replace(found, aliases=aliases)

    def get_by_alias(self, name: str, alias: str) -> Any:
        if (name, alias) not in self.aliases:
            raise self._refuse(f"alias {alias} of {name}")
        return self.get_version(name, self.aliases[name, alias])

    def latest_in_stage(self, name: str, stage: str) -> list[Any]:
        # MLflow answers the newest version of each stage asked for; the order of a
        # longer list is the resolver's business, so this one lists all, oldest first.
        return [self.get_version(n, v) for (n, v), found in sorted(self.versions.items())
                if n == name and found.current_stage == stage]


class RestStub:
    """A `FakeRegistry` behind MLflow's REST routes on a loopback port (the routes
    `inferd.reloading.registry.rest` calls). Records each request's headers; answers
    the statuses queued in `fail_next` first. Use as a context manager; `url` is its
    http:// address."""

    def __init__(self, registry: FakeRegistry) -> None:
        import http.server

        self.registry = registry
        self.requests: list[dict[str, str]] = []
        self.fail_next: list[int] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                stub._answer(self)

            def do_POST(self) -> None:
                stub._answer(self)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _route(self, method: str, path: str, query: dict[str, str],
               body: dict[str, Any]) -> tuple[int, Any]:
        from inferd.reloading.registry.base import RegistryRefused

        api = "/api/2.0/mlflow"
        try:
            if path == "/version":
                return 200, "3.0.0-stub"
            if path == f"{api}/model-versions/get":
                found = self.registry.get_version(query["name"], query["version"])
                return 200, {"model_version": _rest_version(query["name"], found)}
            if path == f"{api}/registered-models/alias":
                found = self.registry.get_by_alias(query["name"], query["alias"])
                return 200, {"model_version": _rest_version(query["name"], found)}
            if path == f"{api}/registered-models/get-latest-versions" and method == "POST":
                found_all = self.registry.latest_in_stage(body["name"], body["stages"][0])
                return 200, {"model_versions": [_rest_version(body["name"], v)
                                                for v in found_all]}
        except RegistryRefused as exc:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": str(exc)}
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"no route {path}"}

    def _answer(self, handler: Any) -> None:
        import json
        from urllib.parse import parse_qsl, urlsplit

        self.requests.append(dict(handler.headers.items()))
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length) or b"{}")
        if self.fail_next:
            status, answer = self.fail_next.pop(0), {"message": "stub failure"}
        else:
            status, answer = self._route(handler.command, split.path,
                                         dict(parse_qsl(split.query)), body)
        data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def __enter__(self) -> RestStub:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _rest_version(name: str, found: Any) -> dict[str, Any]:
    """A RegistryVersion as MLflow's REST API writes a ModelVersion (empty strings are
    left out, as protobuf's JSON leaves them out)."""
    body = {"name": name, "version": found.version, "run_id": found.run_id,
            "source": found.source, "current_stage": found.current_stage,
            "aliases": list(found.aliases)}
    return {key: value for key, value in body.items() if value not in ("", [], None)}
