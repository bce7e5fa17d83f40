"""inferd's gunicorn settings plus a test probe: after each request a worker writes the
names of the modules it has imported to $INFERD_TEST_PROBE_DIR/modules-<pid>.json.
Used as `gunicorn -c python:tests.integration.probe_conf inferd.app:app`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from inferd.gunicorn_conf import *  # noqa: F403
from inferd.gunicorn_conf import child_exit, on_starting  # noqa: F401  (hooks, by name)


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    probe = Path(os.environ["INFERD_TEST_PROBE_DIR"]) / f"modules-{os.getpid()}.json"
    tmp = probe.with_suffix(".tmp")
    tmp.write_text(json.dumps(sorted(sys.modules)))
    tmp.replace(probe)
