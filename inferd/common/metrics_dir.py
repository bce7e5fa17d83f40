"""The directory of the workers' metric files (PROMETHEUS_MULTIPROC_DIR): checked and
emptied by the master at every start.

A module of its own, apart from `inferd.common.metrics`, because it runs before the
master may import prometheus_client (which reads the variable at import).

Emptying a directory the operator named is only safe when it holds nothing but
metric files: a typo (`/var/lib`, the state directory, a home directory) must not
delete what is there. So `empty_metrics_dir` first checks every entry and refuses,
deleting nothing, when one is anything but a file prometheus_client writes:
`<kind>_<pid>.db`, the kind being `counter`, `histogram`, `summary` or
`gauge_<mode>` (prometheus_client/values.py, `MultiProcessValue`:
https://github.com/prometheus/client_python/blob/v0.26.0/prometheus_client/values.py#L71).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from inferd.common.errors import ConfigError

METRIC_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db")


def empty_metrics_dir(directory: Path, variable: str) -> None:
    """Make `directory` an empty directory (0700), creating it if missing; raise
    ConfigError, deleting nothing, when it holds anything but metric files.
    `variable` names the setting in the error."""
    stray = _not_metric_files(directory)
    if stray:
        shown = ", ".join(sorted(stray)[:3]) + (" ..." if len(stray) > 3 else "")
        raise ConfigError(
            f"{variable}={directory} holds {len(stray)} entr{'y' if len(stray) == 1 else 'ies'} "
            f"that {'is' if len(stray) == 1 else 'are'} not metric files ({shown}); inferd "
            "empties that directory at every start, so it must hold nothing else: point "
            f"{variable} at a directory of its own (the default is <state>/metrics)")
    for name in os.listdir(directory) if directory.is_dir() else ():
        (directory / name).unlink(missing_ok=True)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def _not_metric_files(directory: Path) -> list[str]:
    try:
        mode = os.lstat(directory).st_mode
    except FileNotFoundError:
        return []
    if not stat.S_ISDIR(mode):  # a file, or a symlink to somewhere else
        return [f"{directory} itself, which is not a directory"]
    stray = []
    for entry in os.scandir(directory):
        if not (METRIC_FILE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)):
            stray.append(entry.name)
    return stray
