"""The generation counter file: its byte layout, corruption handling, and sharing."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from inferd.common.errors import CorruptStateError
from inferd.store import generation
from inferd.store.generation import GenerationCounter


@pytest.fixture
def counter_path(tmp_path: Path) -> Path:
    path = tmp_path / "generation"
    generation.create(path)
    return path


def test_file_is_16_bytes_magic_then_little_endian_uint64(tmp_path: Path) -> None:
    path = tmp_path / "generation"
    generation.create(path, value=7)

    raw = path.read_bytes()
    assert len(raw) == 16
    assert raw[:8] == b"INFDGEN\x01"
    assert struct.unpack("<Q", raw[8:]) == (7,)
    assert not list(tmp_path.glob(".generation*")), "create left its temporary file behind"


def test_new_counter_reads_zero(counter_path: Path) -> None:
    assert GenerationCounter(counter_path).read() == 0


def test_create_keeps_an_existing_counter(counter_path: Path) -> None:
    GenerationCounter(counter_path).bump(5)
    generation.create(counter_path)  # a second process starting up
    assert GenerationCounter(counter_path).read() == 5


def test_bump_is_written_to_the_file(counter_path: Path) -> None:
    counter = GenerationCounter(counter_path)
    counter.bump(3)
    counter.bump(3)  # the same value again is allowed: it does not lower anything
    assert counter.read() == 3
    assert counter_path.read_bytes() == b"INFDGEN\x01" + struct.pack("<Q", 3)


def test_bump_refuses_to_lower(counter_path: Path) -> None:
    counter = GenerationCounter(counter_path)
    counter.bump(4)
    with pytest.raises(CorruptStateError, match="refusing to lower generation from 4 to 2"):
        counter.bump(2)
    assert counter.read() == 4


def test_two_counters_on_one_file_see_each_others_bumps(counter_path: Path) -> None:
    worker = GenerationCounter(counter_path)
    reloader = GenerationCounter(counter_path)
    assert worker.read() == 0

    reloader.bump(1)
    assert worker.read() == 1
    worker.bump(2)
    assert reloader.read() == 2


def test_large_generation_round_trips(counter_path: Path) -> None:
    counter = GenerationCounter(counter_path)
    counter.bump(2**63 + 5)
    assert GenerationCounter(counter_path).read() == 2**63 + 5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is 0 bytes, expected 16"),
        (b"INFDGEN\x01", "is 8 bytes, expected 16"),
        (b"INFDGEN\x01" + b"\0" * 9, "is 17 bytes, expected 16"),
        (b"\0" * 16, "starts with"),
        (b"INFDGEN\x02" + b"\0" * 8, "expected b'INFDGEN\\x01'"),
        (b"garbage garbage!", "starts with b'garbage "),
    ],
    ids=["empty", "truncated", "too-long", "zeros", "future-format", "not-ours"],
)
def test_corrupt_file_raises_instead_of_reading_zero(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "generation"
    path.write_bytes(content)
    with pytest.raises(CorruptStateError, match="generation file") as caught:
        GenerationCounter(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        GenerationCounter(tmp_path / "nope")
