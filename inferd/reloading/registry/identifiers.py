"""What a registry may answer as a version number and a run id.

Both come from whoever can write to the registry, and both travel far: the version
into the `X-Model-Version` header of every answer and into the download cache's
directory names, the run id into the cache's directory names too. A version with a
control character would break every `/predict/` answer; a run id of `../..` would
write outside the cache. MLflow's own are a decimal number and a hex uuid, so
nothing else is accepted: `checked` refuses the answer (RegistryRefused), the reload
fails naming it, and the old model keeps serving.

Called by `inferd.reloading.registry.resolver.resolve`, the one place every asker
(reload, refresh poll, /health/) gets a version from.
"""

from __future__ import annotations

import re

from inferd.reloading.registry.base import RegistryRefused, RegistryVersion

# A positive decimal, short enough for any int; a run id of hex digits (MLflow: 32).
_VERSION = re.compile(r"[1-9][0-9]{0,17}", re.ASCII)
_RUN_ID = re.compile(r"[0-9a-f]{1,64}", re.ASCII | re.IGNORECASE)
_SHOWN = 40


def checked(found: RegistryVersion, name: str) -> RegistryVersion:
    """`found`, if its version is a number and its run id (when any) hex digits."""
    if not isinstance(found.version, str) or not _VERSION.fullmatch(found.version):
        raise RegistryRefused(
            f"the registry answered version {_shown(found.version)} for {name!r}: expected "
            "a version number such as 3")
    if found.run_id and not (isinstance(found.run_id, str) and _RUN_ID.fullmatch(found.run_id)):
        raise RegistryRefused(
            f"the registry answered run id {_shown(found.run_id)} for version "
            f"{found.version} of {name!r}: expected hex digits")
    return found


def _shown(value: object) -> str:
    # repr() escapes control characters, so the message itself stays one safe line.
    return repr(value)[:_SHOWN]
