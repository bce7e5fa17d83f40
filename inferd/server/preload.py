"""Import what every worker imports, once, in the gunicorn master before it forks.

Workers are forked from the master, so modules the master has imported are shared
copy-on-write by all workers instead of being imported (and held) by each: numpy,
falcon, orjson, prometheus_client and inferd's own serving modules. Measured with
the benchmark suite's PSS figures, this is most of what an extra worker costs.

What a worker still costs is the pages it writes: in CPython 3.11 using an object
writes its reference count, so each shared page that holds a function, code object or
constant that the worker's start or its requests use is copied, about 12 MB a worker
(docs/performance.md, "Memory"); opening the workers' service and app in the
master as well (`inferd.server.prefork`) takes about 5 MB off that.

Called by the `on_starting` hook after `lifecycle.on_starting` (which sets
PROMETHEUS_MULTIPROC_DIR, read when the metrics module is imported). Nothing here
creates the app, opens the store or starts a thread: the hook does the first two next
(`inferd.server.prefork`), and the threads are each worker's. Never imports
scikit-learn, pandas, scipy or MLflow, which a worker serving a compiled slot never
needs.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 128 * 1024


def preload_serving_modules() -> None:
    # Imported for their side effect, importing everything a worker's request path
    # needs (numpy, orjson, falcon, the compiled-model readers, and numba with the tree
    # kernel compiled, or loaded from numba's cache: 0.3-1 s and about 110 MB RSS, 70 MB
    # of it llvmlite's code, released below), and every module `inferd.app` imports
    # (tests/unit/test_preload.py checks that a worker imports nothing more).
    import inferd.model.compiled.compile  # noqa: F401
    import inferd.server.inline  # noqa: F401
    import inferd.serving.service  # noqa: F401
    import inferd.web.docs  # noqa: F401
    import inferd.web.middleware  # noqa: F401
    import inferd.web.origin  # noqa: F401
    import inferd.web.resources  # noqa: F401
    import inferd.web.scoring  # noqa: F401
    import inferd.web.v2  # noqa: F401
    from inferd.model.compiled.kernel import release_compiler_pages

    release_compiler_pages()  # LLVM's code pages: compiled, the workers never run them
    pin_malloc_mmap_threshold()


def freeze_before_fork() -> None:
    """The master's last step before it forks (after the preload and the workers'
    service): objects that exist now are never collected, and freezing them keeps the
    collector from writing to them in each worker, which would copy their pages
    (CPython's advice for pre-fork servers, gc.freeze docs)."""
    gc.freeze()


def pin_malloc_mmap_threshold() -> None:
    """Keep glibc from raising its mmap threshold after large frees (its default).

    Loading a large compiled slot makes node-sized temporaries (tens of MB) to check
    the arrays; with the dynamic threshold, later allocations of that size come from
    the heap and stay there after they are freed: about 12 MB a worker on a 1.8M-node
    forest (benchmark suite, PSS by workers). Pinned, they are returned at once.
    Inherited by the forked workers. A no-op where libc is not glibc.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
