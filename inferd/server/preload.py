"""Import what every worker imports, once, in the gunicorn master before it forks.

Workers are forked from the master, so modules the master has imported are shared
copy-on-write by all workers instead of being imported (and held) by each: numpy,
falcon, orjson, prometheus_client and inferd's own serving modules. Measured with
the benchmark suite's PSS figures, this is most of what an extra worker costs.

What a worker still costs is the pages it writes: in CPython 3.11 every object a
worker uses gets its reference count written, so each page holding a function, code
object or constant that the worker's start or a request touches is copied (about
9-12 MB a worker, measured with /proc/<pid>/pagemap; docs/performance.md, "Memory").
This module keeps the rest from adding to it: modules and caches a worker would
build itself, malloc arenas per thread, and the collector's writes.

Called by the `on_starting` hook after `lifecycle.on_starting` (which sets
PROMETHEUS_MULTIPROC_DIR, read when the metrics module is imported). Nothing here
creates the app, opens the store or starts a thread: those belong to each worker
(`inferd.app` builds its app on first access, in the worker). Never imports
scikit-learn, pandas, scipy or MLflow, which a worker serving a compiled slot never
needs.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import mimetypes

# glibc's mallopt parameter numbers (malloc.h).
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024
# The main arena and one more, shared by all of a worker's threads.
MALLOC_ARENAS = 2


def preload_serving_modules() -> None:
    # Imported for their side effect, importing everything a worker's request path
    # needs (numpy, orjson, falcon, the compiled-model readers, and numba with the tree
    # kernel compiled, or loaded from numba's cache: 0.3-1 s and about 110 MB RSS, 70 MB
    # of it llvmlite's code, released below), and every module `inferd.app` imports
    # (tests/unit/test_preload.py checks that a worker imports nothing more).
    import inferd.model.compiled.compile  # noqa: F401
    import inferd.serving.service  # noqa: F401
    import inferd.web.docs  # noqa: F401
    import inferd.web.middleware  # noqa: F401
    import inferd.web.origin  # noqa: F401
    import inferd.web.resources  # noqa: F401
    import inferd.web.scoring  # noqa: F401
    import inferd.web.v2  # noqa: F401
    from inferd.model.compiled.kernel import release_compiler_pages

    release_compiler_pages()  # LLVM's code pages: compiled, the workers never run them
    # Every falcon.App reads the system's MIME tables once per process unless this
    # process has (falcon.response.ResponseOptions); read here, the workers share them.
    mimetypes.init()
    pin_malloc_mmap_threshold()
    cap_malloc_arenas()
    # Objects that exist now are never collected; freezing them keeps the collector
    # from writing to them in each worker, which would copy their pages (CPython's
    # advice for pre-fork servers, gc.freeze docs).
    gc.freeze()


def _mallopt(parameter: int, value: int) -> bool:
    """glibc's mallopt, inherited by the forked workers; False where libc is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    with contextlib.suppress(OSError, AttributeError):
        return bool(ctypes.CDLL(name).mallopt(parameter, value))
    return False


def pin_malloc_mmap_threshold() -> bool:
    """Keep glibc from raising its mmap threshold after large frees (its default).

    Loading a large compiled slot makes node-sized temporaries (tens of MB) to check
    the arrays; with the dynamic threshold, later allocations of that size come from
    the heap and stay there after they are freed: about 12 MB a worker on a 1.8M-node
    forest (benchmark suite, PSS by workers). Pinned, they are returned at once.
    """
    return _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def cap_malloc_arenas() -> bool:
    """Let a worker's threads share MALLOC_ARENAS malloc arenas instead of one each.

    glibc gives each thread that allocates its own arena (up to 8 per core), and each
    arena keeps pages of its own: a gthread worker has four request threads plus the
    slot watcher and the refresh threads. Python allocates under the GIL, so the
    threads seldom wait for a shared arena's lock. Shared, the memory a worker frees
    is reused by its other threads: measured 1-1.5 MB less a worker (docs/performance.md,
    "Memory"). MALLOC_ARENA_MAX in the environment is read by glibc before this and
    then replaced.
    """
    return _mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
