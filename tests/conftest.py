from __future__ import annotations

import sys
from pathlib import Path

# Gunicorn workers started by integration tests unpickle models defined in
# tests/fakes.py, so the repository root must be importable everywhere.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
