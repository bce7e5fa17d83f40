"""The Selector value and the one place that writes MLflow model URIs."""

from __future__ import annotations

import pytest

from inferd.common.selector import Selector, version_uri
from inferd.common.settings import Settings


@pytest.mark.parametrize(
    ("selector", "uri"),
    [
        (Selector("version", "3"), "models:/iris/3"),
        (Selector("alias", "champion"), "models:/iris@champion"),
        (Selector("stage", "Production"), "models:/iris/Production"),
    ],
)
def test_model_uri_of_each_kind(selector: Selector, uri: str) -> None:
    assert selector.model_uri("iris") == uri


def test_a_resolved_version_has_the_pinned_form() -> None:
    assert version_uri("iris", "7") == "models:/iris/7" == Selector.pinned("7").model_uri("iris")


def test_settings_name_what_a_reload_asks_for() -> None:
    settings = Settings(mlflow_model_name="fraud", mlflow_model_alias="champion")
    assert (settings.selector.kind, settings.selector.value) == ("alias", "champion")
    assert settings.requested_model_uri == "models:/fraud@champion"
    assert settings.selector.describe() == "alias=champion"
