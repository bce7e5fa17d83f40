"""`/openapi.json`, and the two viewers of it, `/docs` (Swagger UI) and `/redoc`.

Inferd usually runs on VMs without internet access, so the viewers' scripts and
stylesheets are served by inferd itself from `drf-spectacular-sidecar`, the
monthly-released PyPI package that carries both swagger-ui-dist and ReDoc's
standalone bundle. Only its static files are read; its Python package (which
imports Django) never is. Swagger UI's online validator badge is turned off, so
neither page makes a request that leaves the machine.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import falcon
import orjson

from inferd.common.settings import Settings
from inferd.web import openapi

STATIC_PREFIX = "/docs/static"

# name served under STATIC_PREFIX -> (path inside the sidecar's static dir, media type)
_ASSETS: dict[str, tuple[str, str]] = {
    "swagger-ui-bundle.js": ("swagger-ui-dist/swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": ("swagger-ui-dist/swagger-ui.css", "text/css"),
    "favicon-32x32.png": ("swagger-ui-dist/favicon-32x32.png", "image/png"),
    "redoc.standalone.js": ("redoc/bundles/redoc.standalone.js", "text/javascript"),
}

_SWAGGER_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>inferd API - Swagger UI</title>
<link rel="stylesheet" href="{STATIC_PREFIX}/swagger-ui.css">
<link rel="icon" type="image/png" href="{STATIC_PREFIX}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{STATIC_PREFIX}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: true
}});
</script>
</body>
</html>
"""

_REDOC_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>inferd API - ReDoc</title>
<link rel="icon" type="image/png" href="{STATIC_PREFIX}/favicon-32x32.png">
</head>
<body>
<redoc spec-url="/openapi.json"></redoc>
<script src="{STATIC_PREFIX}/redoc.standalone.js"></script>
</body>
</html>
"""


def _static_root() -> Path | None:
    spec = importlib.util.find_spec("drf_spectacular_sidecar")  # locates, does not import
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "static" / \
        "drf_spectacular_sidecar"


class OpenApiResource:
    def __init__(self, settings: Settings) -> None:
        self.document = orjson.dumps(openapi.build(settings))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = self.document
        resp.content_type = falcon.MEDIA_JSON


class PageResource:
    def __init__(self, html: str) -> None:
        self.html = html.encode()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = self.html
        resp.content_type = falcon.MEDIA_HTML


class StaticResource:
    """The viewers' assets: a fixed list of names, so no request can name a path."""

    def __init__(self) -> None:
        self.root = _static_root()

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        if name not in _ASSETS:
            raise falcon.HTTPNotFound(description=f"no asset named {name!r}")
        if self.root is None:  # a broken install must not stop predictions, only docs
            raise falcon.HTTPNotFound(
                description="drf-spectacular-sidecar is not installed; reinstall inferd")
        relative, media_type = _ASSETS[name]
        path = self.root / relative
        resp.set_stream(path.open("rb"), path.stat().st_size)
        resp.content_type = media_type
        resp.cache_control = ["public", "max-age=86400"]


def add_routes(app: falcon.App, settings: Settings) -> None:
    app.add_route("/openapi.json", OpenApiResource(settings))
    app.add_route("/docs", PageResource(_SWAGGER_PAGE))
    app.add_route("/redoc", PageResource(_REDOC_PAGE))
    app.add_route(STATIC_PREFIX + "/{name}", StaticResource())
