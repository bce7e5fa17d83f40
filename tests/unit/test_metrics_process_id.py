"""The process id the multiprocess metrics ask for on every increment is read once and
again after a fork, so a forked worker still writes its own files."""

from __future__ import annotations

import os

from inferd.common import metrics


def test_the_process_id_is_read_once_and_again_after_a_fork() -> None:
    pids = iter([100, 200])
    calls = []

    def getpid() -> int:
        calls.append(1)
        return next(pids)

    process_id = metrics.ProcessId(getpid)
    assert [process_id(), process_id(), process_id()] == [100, 100, 100]
    assert len(calls) == 1
    process_id.forked()
    assert process_id() == 200


def test_a_forked_child_answers_its_own_pid() -> None:
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(write, f"{metrics.PROCESS_ID()} {os.getpid()}".encode())
        os._exit(0)
    os.close(write)
    answer = os.read(read, 100).decode().split()
    os.close(read)
    os.waitpid(child, 0)
    assert answer[0] == answer[1] == str(child)
    assert metrics.PROCESS_ID() == os.getpid()
