"""inferd's `/invocations` against the real thing: `mlflow models serve` of the same
registered versions, sent the same requests, must give the same answers.

Four versions of one registered model in a real `mlflow server`: (1) a random forest on
iris with a named-column signature, (2) a logistic regression logged with
`pyfunc_predict_fn="predict_proba"`, (3) a pipeline whose ColumnTransformer one-hot
encodes a string column and passes a numeric one through, (4) a gradient boosting
classifier logged from a NumPy array (a tensor signature, columns by position).

Each version is served by its own `mlflow models serve --env-manager local`, all four
started at once and once for the module; one inferd (gunicorn, 2 workers) follows an
alias, moved to each version in turn and reloaded (the `served` fixture: one reload a
version). Every request of the corpus goes to both servers: equal status codes, and for
a 200 equal predictions, compared as parsed JSON with `==`: floats equal to the bit
(MLflow prints `1.4e-08` where inferd prints `1.4e-8`; both are the shortest repr of
the same double).
Where they differ on purpose (docs/protocols.md) the test says so and asserts inferd's
answer.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from inferd import __version__
from tests.integration.servers import (
    HTTP_TIMEOUT,
    READY_TIMEOUT,
    InferdServer,
    MlflowServer,
    Process,
    spawn,
    start_inferd,
    stop_inferd,
)
from tests.support import clean_env, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "oracle"
ALIAS = "serving"
IRIS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
PIPELINE = ["color", "size"]
PIPELINE_ROWS = [["red", 0.5], ["blue", -1.25], ["green", 0.0]]


@dataclass(frozen=True)
class Kind:
    """A registered version and what its requests look like."""

    name: str
    version: str
    columns: list[str]
    rows: list[list[Any]]


KINDS = {
    "forest": Kind("forest", "1", IRIS, IRIS_ROWS),
    "proba": Kind("proba", "2", IRIS, IRIS_ROWS),
    "pipeline": Kind("pipeline", "3", PIPELINE, PIPELINE_ROWS),
    "boosting": Kind("boosting", "4", IRIS, IRIS_ROWS),
}


def register_models(tracking_uri: str) -> None:
    """Log the four models, in KINDS' order, as versions 1-4 of NAME."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    iris = load_iris(as_frame=True)
    x, y = iris.data, iris.target
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"color": rng.choice(["red", "green", "blue"], 200),
                          "size": rng.normal(size=200)})
    label = ((frame["color"] == "red") ^ (frame["size"] > 0)).astype(int)

    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    proba = LogisticRegression(max_iter=500).fit(x, y)
    pipeline = Pipeline([
        ("columns", ColumnTransformer([
            ("onehot", OneHotEncoder(handle_unknown="ignore"), ["color"]),
            ("size", "passthrough", ["size"])])),
        ("classifier", LogisticRegression()),
    ]).fit(frame, label)
    boosting = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(x.values, y)
    logged: list[tuple[Any, Any, dict[str, Any]]] = [
        (forest, infer_signature(x, forest.predict(x)), {}),
        (proba, infer_signature(x, proba.predict_proba(x)), {"pyfunc_predict_fn": "predict_proba"}),
        (pipeline, infer_signature(frame, pipeline.predict(frame)), {}),
        (boosting, infer_signature(x.values, boosting.predict(x.values)), {}),
    ]
    mlflow.set_tracking_uri(tracking_uri)
    for model, signature, extra in logged:
        with mlflow.start_run():
            # cloudpickle: what both servers load without a skops trust list; the
            # requirements given, since inferring them runs a Python subprocess a model.
            mlflow.sklearn.log_model(model, name="model", signature=signature,
                                     registered_model_name=NAME,
                                     serialization_format="cloudpickle",
                                     pip_requirements=["scikit-learn"], **extra)


@dataclass
class ScoringServer:
    """A running `mlflow models serve`."""

    process: Process
    url: str


def spawn_scoring_server(base: Path, tracking_uri: str, version: str) -> ScoringServer:
    exe = shutil.which("mlflow")
    if exe is None:
        pytest.fail("the `mlflow` command is not on PATH (pip install mlflow)")
    port = free_port()
    cmd = [exe, "models", "serve", "-m", f"models:/{NAME}/{version}", "--env-manager", "local",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = clean_env(MLFLOW_TRACKING_URI=tracking_uri)
    process = spawn(f"mlflow models serve v{version}", cmd, env,
                    base / f"mlflow-serve-{version}.log")
    return ScoringServer(process, f"http://127.0.0.1:{port}")


def pings(url: str) -> bool:
    try:
        return requests.get(f"{url}/ping", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@dataclass
class Servers:
    mlflow: MlflowServer
    inferd: InferdServer
    oracles: dict[str, ScoringServer]
    serving: str | None = None  # the kind inferd serves now

    def serve(self, kind: Kind) -> None:
        """Point inferd at `kind`'s version: move the alias, reload."""
        if self.serving == kind.name:
            return
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=self.mlflow.url).set_registered_model_alias(
            NAME, ALIAS, kind.version)
        resp = self.inferd.admin("reload")
        assert resp.status_code == 200, resp.text
        assert resp.json()["version"] == kind.version
        self.serving = kind.name


@pytest.fixture(scope="module")
def servers(mlflow_server: MlflowServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    base = tmp_path_factory.mktemp("oracle")
    register_models(mlflow_server.url)
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=mlflow_server.url).set_registered_model_alias(NAME, ALIAS, "1")
    # All four start together (each takes ~20 s, mostly importing MLflow), while
    # inferd starts too.
    oracles = {k.name: spawn_scoring_server(base, mlflow_server.url, k.version)
               for k in KINDS.values()}
    inferd = None
    try:
        inferd = start_inferd(base, {
            "MODEL_SOURCE": "mlflow", "MLFLOW_TRACKING_URI": mlflow_server.url,
            "MLFLOW_MODEL_NAME": NAME, "MLFLOW_MODEL_ALIAS": ALIAS,
            # The models are cloudpickled (above): this registry's writer is the test.
            "INFERD_ALLOW_PICKLE": "true"})
        for oracle in oracles.values():
            wait_for(lambda o=oracle: pings(o.url), READY_TIMEOUT,
                     f"{oracle.process.name} to answer /ping", oracle.process, interval=0.3)
        yield Servers(mlflow_server, inferd, oracles, serving="forest")
    finally:
        # Stopped together, as they started. Not our program: the exit code of
        # mlflow models serve on SIGTERM is not ours to judge.
        with ThreadPoolExecutor(len(oracles)) as pool:
            stopping = [pool.submit(o.process.stop, strict=True, check_exit_code=False)
                        for o in oracles.values()]
            if inferd is not None:
                stop_inferd(inferd)
            for stopped in stopping:
                stopped.result()


# -- the corpus ------------------------------------------------------------------------------

JSON_TYPE = "application/json"
Request = tuple[str, bytes, str | None]  # (what, body, Content-Type)


def _json(what: str, doc: Any, content_type: str | None = JSON_TYPE) -> Request:
    return what, json.dumps(doc).encode(), content_type


def _csv(what: str, columns: list[str], rows: list[list[Any]]) -> Request:
    lines = [",".join(columns)] + [",".join("" if v is None else str(v) for v in row)
                                   for row in rows]
    return what, ("\n".join(lines) + "\n").encode(), "text/csv"


def _mistyped(kind: Kind) -> list[Request]:
    """A value of another type in the first and in the last column of the first row."""
    requests_ = []
    for where, i in (("first", 0), ("last", len(kind.columns) - 1)):
        for label, value in (("a number as a string", str(kind.rows[0][i])),
                             ("a word", "abc"), ("null", None), ("true", True),
                             ("an integer", 2), ("an array", [1.0]), ("an object", {"a": 1})):
            row = list(kind.rows[0])
            row[i] = value
            requests_.append(_json(f"the {where} column is {label}",
                                   {"dataframe_split": {"columns": kind.columns, "data": [row]}}))
    return requests_


def corpus(kind: Kind) -> list[Request]:
    cols, rows = kind.columns, kind.rows
    records = [dict(zip(cols, row, strict=True)) for row in rows]
    shuffled = cols[::-1]
    shuffled_rows = [row[::-1] for row in rows]
    return [
        # every format
        _json("dataframe_split", {"dataframe_split": {"columns": cols, "data": rows}}),
        _json("dataframe_split, one row", {"dataframe_split": {"columns": cols,
                                                               "data": rows[:1]}}),
        _json("dataframe_split, shuffled columns",
              {"dataframe_split": {"columns": shuffled, "data": shuffled_rows}}),
        _json("dataframe_split with an index",
              {"dataframe_split": {"columns": cols, "data": rows, "index": [7, 8, 9]}}),
        _json("dataframe_split without columns", {"dataframe_split": {"data": rows}}),
        _json("dataframe_records", {"dataframe_records": records}),
        _json("dataframe_records, shuffled keys",
              {"dataframe_records": [dict(reversed(r.items())) for r in records]}),
        _json("instances as records", {"instances": records}),
        _json("instances as rows", {"instances": rows}),
        _json("inputs as columns", {"inputs": {c: [r[i] for r in rows]
                                               for i, c in enumerate(cols)}}),
        _json("inputs as records", {"inputs": records}),
        _json("inputs as rows", {"inputs": rows}),
        _json("params", {"dataframe_split": {"columns": cols, "data": rows},
                         "params": {"threshold": 0.5}}),
        _json("an unknown field beside the format", {"dataframe_records": records, "x": 1}),
        # missing, extra and mistyped columns
        _json("a missing column", {"dataframe_split": {"columns": cols[:-1],
                                                      "data": [r[:-1] for r in rows]}}),
        _json("an extra column", {"dataframe_split": {"columns": [*cols, "extra"],
                                                     "data": [[*r, 1.0] for r in rows]}}),
        _json("a record missing a key", {"dataframe_records": [records[0], {cols[0]: rows[1][0]}]}),
        _json("a short row", {"dataframe_split": {"columns": cols,
                                                 "data": [rows[0], rows[1][:1]]}}),
        *_mistyped(kind),
        # CSV
        _csv("CSV", cols, rows),
        _csv("CSV, shuffled columns", shuffled, shuffled_rows),
        _csv("CSV, a missing column", cols[:-1], [r[:-1] for r in rows]),
        _csv("CSV, an empty field", cols, [[None, *rows[0][1:]]]),
        _csv("CSV, a word in every column", cols, [["abc"] * len(cols)]),
        ("CSV, empty", b"", "text/csv"),
        ("CSV, no header row", b"\n", "text/csv"),
        # malformed bodies
        ("invalid JSON", b'{"dataframe_split": {', JSON_TYPE),
        ("an empty body", b"", JSON_TYPE),
        _json("a JSON array", rows),
        _json("a JSON number", 5),
        _json("no format field", {"data": rows}),
        _json("two format fields", {"dataframe_split": {"columns": cols, "data": rows},
                                    "instances": rows}),
        _json("dataframe_split as a list", {"dataframe_split": rows}),
        _json("dataframe_split without data", {"dataframe_split": {"columns": cols}}),
        _json("dataframe_split with a stray field",
              {"dataframe_split": {"columns": cols, "data": rows, "orient": "split"}}),
        _json("dataframe_split, more values than columns",
              {"dataframe_split": {"columns": cols, "data": [[*rows[0], 1]]}}),
        _json("dataframe_split, no rows", {"dataframe_split": {"columns": cols, "data": []}}),
        _json("dataframe_records as an object", {"dataframe_records": records[0]}),
        _json("instances, ragged rows", {"instances": [rows[0], rows[0][:1]]}),
        _json("inputs, a number", {"inputs": 5}),
        # content types
        _json("text/plain", {"dataframe_records": records}, "text/plain"),
        _json("a charset other than UTF-8", {"dataframe_records": records},
              "application/json; charset=latin-1"),
        _json("charset UTF-8", {"dataframe_records": records}, "application/json; charset=UTF-8"),
        _json("an unknown content type parameter", {"dataframe_records": records},
              "application/json; format=pandas-split"),
    ]


def post(url: str, request: Request) -> requests.Response:
    _, body, content_type = request
    headers = {"Connection": "close"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return requests.post(f"{url}/invocations", data=body, headers=headers,
                         timeout=HTTP_TIMEOUT)


def answer(resp: requests.Response) -> tuple[int, Any]:
    """(status, predictions) for a 200, else (status, None)."""
    if resp.status_code != 200:
        return resp.status_code, None
    return 200, resp.json()["predictions"]


def check_error_shape(resp: requests.Response) -> None:
    if resp.status_code != 200:
        assert resp.headers["Content-Type"].startswith("application/json"), resp.text
        assert set(resp.json()) == {"error_code", "message"}, resp.text


# The corpus of each kind, by request name (the names are the same for every kind).
CORPUS = {name: {request[0]: request for request in corpus(kind)}
          for name, kind in KINDS.items()}
NAMES = list(CORPUS["forest"])
assert all(list(requests_) == NAMES for requests_ in CORPUS.values())


@pytest.fixture(scope="module", params=list(KINDS))
def served(request: pytest.FixtureRequest, servers: Servers) -> Kind:
    """The kind inferd serves for a test. Module-scoped and parametrized, so pytest
    runs every test of one kind before the next: one reload a kind."""
    kind = KINDS[request.param]
    servers.serve(kind)
    return kind


@pytest.mark.parametrize("what", NAMES)
def test_inferd_answers_as_mlflow_models_serve(servers: Servers, served: Kind,
                                               what: str) -> None:
    request_ = CORPUS[served.name][what]
    expected = post(servers.oracles[served.name].url, request_)
    got = post(servers.inferd.url, request_)

    assert answer(got) == answer(expected), (
        f"{what}: mlflow models serve answered {expected.status_code} "
        f"{expected.text[:300]}; inferd {got.status_code} {got.text[:300]}")
    check_error_shape(got)
    if got.status_code == 200:
        assert got.headers["X-Model-Version"] == served.version


# -- what differs on purpose ---------------------------------------------------------------


def test_a_request_without_content_type_is_415_where_mlflow_answers_500(
        servers: Servers, served: Kind) -> None:
    request_ = _json("no Content-Type", {"dataframe_split": {"columns": served.columns,
                                                             "data": served.rows}}, None)
    assert post(servers.oracles[served.name].url, request_).status_code == 500
    resp = post(servers.inferd.url, request_)
    assert resp.status_code == 415
    check_error_shape(resp)


# -- MLflow's own client -------------------------------------------------------------------


def test_mlflow_s_scoring_client_gets_the_same_predictions(servers: Servers,
                                                            served: Kind) -> None:
    import pandas as pd
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    def client(url: str) -> ScoringServerClient:
        host, port = url.removeprefix("http://").split(":")
        scoring = ScoringServerClient(host, int(port))
        scoring.wait_server_ready(timeout=10)
        return scoring

    frame = pd.DataFrame(served.rows, columns=served.columns)
    expected = client(servers.oracles[served.name].url).invoke(frame)
    got = client(servers.inferd.url).invoke(frame)
    assert got.get_predictions(predictions_format="ndarray").tolist() == (
        expected.get_predictions(predictions_format="ndarray").tolist())
    assert client(servers.inferd.url).get_version() == __version__


def test_ping_and_version_answer_as_mlflow_s(servers: Servers) -> None:
    oracle, inferd = servers.oracles["forest"].url, servers.inferd.url
    for path in ("/ping", "/version"):
        expected = requests.get(oracle + path, timeout=HTTP_TIMEOUT)
        got = requests.get(inferd + path, timeout=HTTP_TIMEOUT)
        assert got.status_code == expected.status_code == 200
    assert requests.get(inferd + "/ping", timeout=HTTP_TIMEOUT).text == (
        requests.get(oracle + "/ping", timeout=HTTP_TIMEOUT).text)

