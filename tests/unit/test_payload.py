"""The /predict/ body parser, driven by a data corpus (tests/unit/payloads/).

`payloads/valid/*.json` decode to the [rows, columns] listed in `expected.json`;
`payloads/invalid/*.json` are refused with a BadRequestError whose message contains
the listed substring, and /predict/ answers them 400 (never 500).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from falcon import testing

from inferd.common.errors import BadRequestError, PayloadTooLargeError
from inferd.common.settings import Settings
from inferd.reloading.reload import open_reloader
from inferd.web.codecs import native as payload
from tests.fakes import write_model
from tests.support import app_client

CORPUS = Path(__file__).parent / "payloads"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())
MAX_ROWS = 8  # the corpus's too_many_rows / max_rows files are written for this limit
VALID = sorted(EXPECTED["valid"])
INVALID = sorted(EXPECTED["invalid"])


def body(kind: str, name: str) -> bytes:
    return (CORPUS / kind / name).read_bytes()


def test_every_corpus_file_has_an_expectation_and_back() -> None:
    assert sorted(p.name for p in (CORPUS / "valid").glob("*.json")) == VALID
    assert sorted(p.name for p in (CORPUS / "invalid").glob("*.json")) == INVALID


@pytest.mark.parametrize("name", VALID)
def test_valid_payload_decodes(name: str) -> None:
    rows = payload.decode(body("valid", name), MAX_ROWS)

    assert list(rows.shape) == EXPECTED["valid"][name]
    assert rows.dtype == np.float64
    assert np.isfinite(rows).all()


def test_decoded_values_are_the_numbers_sent() -> None:
    rows = payload.decode(body("valid", "exponents_and_signs.json"), MAX_ROWS)
    assert rows.tolist() == [[5.1, 3.5, -0.14, 0.0]]


def test_integers_beyond_64_bits_and_the_largest_doubles_decode_finite() -> None:
    # decode relies on this instead of checking every value with np.isfinite.
    # (The model then refuses what exceeds float32: test_finite_value_too_large_....)
    rows = payload.decode(b'{"features": [[18446744073709551615, -9223372036854775809, '
                          b'123456789012345678901234567890, 1e308]]}', MAX_ROWS)
    assert np.isfinite(rows).all()
    assert rows[0, 0] == 2.0**64 and rows[0, 3] == 1e308


@pytest.mark.parametrize("name", INVALID)
def test_invalid_payload_says_what_was_wrong(name: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        payload.decode(body("invalid", name), MAX_ROWS)

    message = str(caught.value)
    assert EXPECTED["invalid"][name] in message
    assert "Traceback" not in message
    assert len(message) < 400


def test_shape_errors_show_the_expected_form() -> None:
    with pytest.raises(BadRequestError, match=r'expected a JSON object like \{"features"'):
        payload.decode(b"[]", MAX_ROWS)


def test_encode_names_the_version() -> None:
    encoded = payload.encode([0, 2, np.int64(1)], "7")
    assert orjson.loads(encoded) == {"predictions": [0, 2, 1], "model_version": "7"}


# -- through the HTTP app -------------------------------------------------------------


@pytest.fixture
def client(make_client: Callable[..., testing.TestClient]) -> testing.TestClient:
    return make_client(max_rows=MAX_ROWS)


@pytest.mark.parametrize("name", VALID)
def test_valid_payload_is_predicted(client: testing.TestClient, name: str) -> None:
    resp = client.simulate_post("/predict/", body=body("valid", name),
                                headers={"Content-Type": "application/json"})

    assert resp.status_code == 200
    rows = EXPECTED["valid"][name][0]
    assert len(resp.json["predictions"]) == rows
    assert all(p in (0, 1, 2) for p in resp.json["predictions"])
    assert resp.json["model_version"] == resp.headers["X-Model-Version"]


@pytest.mark.parametrize("name", INVALID)
def test_invalid_payload_answers_400(client: testing.TestClient, name: str) -> None:
    resp = client.simulate_post("/predict/", body=body("invalid", name),
                                headers={"Content-Type": "application/json"})

    assert resp.status_code == 400
    assert list(resp.json) == ["detail"]
    assert EXPECTED["invalid"][name] in resp.json["detail"]


def test_predictions_match_the_estimator(
    client: testing.TestClient, forests: tuple[Any, Any]
) -> None:
    features = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]
    resp = client.simulate_post("/predict", json={"features": features})
    assert resp.status_code == 200
    assert resp.json["predictions"] == forests[0].predict(np.array(features)).tolist()


@pytest.mark.parametrize("width", [3, 5])
def test_wrong_feature_count_answers_400(client: testing.TestClient, width: int) -> None:
    resp = client.simulate_post("/predict/", json={"features": [[1.0] * width]})
    assert resp.status_code == 400
    assert resp.json == {"detail": f"each row must have 4 features, got {width}"}


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("value", [1e39, -1e300, 1.7976931348623157e308])
def test_finite_value_too_large_for_the_model_answers_400(
    client: testing.TestClient, value: float
) -> None:
    # Tree models compute in float32: a finite float64 beyond its range is the
    # client's input problem, not a server error.
    resp = client.simulate_post("/predict/", json={"features": [[value, 1.0, 1.0, 1.0]]})
    assert resp.status_code == 400
    assert "too large" in resp.json["detail"]


def test_body_over_the_limit_answers_413(make_client: Callable[..., testing.TestClient]) -> None:
    client = make_client(max_rows=MAX_ROWS, max_body_bytes=64)
    small = b'{"features": [[5.1, 3.5, 1.4, 0.2]]}'
    big = b'{"features": [' + b", ".join([b"[5.1, 3.5, 1.4, 0.2]"] * 4) + b"]}"
    assert len(small) <= 64 < len(big)

    assert client.simulate_post("/predict/", body=small).status_code == 200
    resp = client.simulate_post("/predict/", body=big)

    assert resp.status_code == 413
    assert list(resp.json) == ["detail"]
    assert "the limit is 64" in resp.json["detail"]
    assert "INFERD_MAX_BODY_BYTES" in resp.json["detail"]


def test_too_large_error_is_a_bad_request_error() -> None:
    # One subclass, one status: the web table must map it before BadRequestError.
    from inferd.web.errors import status_for

    assert status_for(PayloadTooLargeError("x")).startswith("413")
    assert status_for(BadRequestError("x")).startswith("400")


def test_bad_payload_without_a_model_is_still_400(
    settings: Settings,
) -> None:
    client = app_client(settings, runner=open_reloader(settings))
    assert client.simulate_post("/predict/", body=b"{").status_code == 400
    resp = client.simulate_post("/predict/", json={"features": [[1, 2, 3, 4]]})
    assert resp.status_code == 503
    assert "no model is published yet" in resp.json["detail"]


def test_output_predict_proba_answers_probabilities_with_the_classes(
    client: testing.TestClient, forests: tuple[Any, Any]
) -> None:
    features = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]
    resp = client.simulate_post("/predict/", json={"features": features,
                                                   "output": "predict_proba"})
    assert resp.status_code == 200, resp.text
    assert list(resp.json) == ["predictions", "classes", "model_version"]
    assert resp.json["predictions"] == forests[0].predict_proba(np.array(features)).tolist()
    assert resp.json["classes"] == [0, 1, 2]
    labels = client.simulate_post("/predict/", json={"features": features, "output": "predict"})
    assert labels.json["predictions"] == forests[0].predict(np.array(features)).tolist()
    assert "classes" not in labels.json


@pytest.mark.parametrize("output, shown", [("labels", '"labels"'), (1, "a JSON number"),
                                           (["predict"], "a JSON array")])
def test_an_unknown_output_answers_400(client: testing.TestClient, output: Any,
                                       shown: str) -> None:
    resp = client.simulate_post("/predict/", json={"features": [[1.0] * 4], "output": output})
    assert resp.status_code == 400
    assert resp.json == {"detail": f"'output' is {shown}; expected one of predict, "
                                   "predict_proba"}


def test_predict_proba_of_a_regressor_answers_400(
    make_settings: Callable[..., Settings], model_path: Path
) -> None:
    from sklearn.linear_model import LinearRegression

    write_model(model_path, LinearRegression().fit(np.eye(4), np.arange(4.0)))
    settings = make_settings()
    reloader = open_reloader(settings)
    reloader.run()
    client = app_client(settings, runner=reloader)
    resp = client.simulate_post("/predict/", json={"features": [[1.0] * 4],
                                                   "output": "predict_proba"})
    assert resp.status_code == 400
    assert "not a classifier" in resp.json["detail"]
