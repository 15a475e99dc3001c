"""The pieces of the streamed dump that need no database: the bounded tee into a real process's stdin
(every byte arrives; a consumer that dies stops the producer instead of hanging it) and the cut of a
database into streams by table."""

from __future__ import annotations

import os
import subprocess

import pytest

from journal import vault
from services.steps.dumps import cut_by_table


def test_tee_hands_every_chunk_to_a_real_process(tmp_path):
    out = tmp_path / "copy"
    chunks = [os.urandom(n) for n in (1, 65536, 1 << 20, 3, 0, 777)]
    with out.open("wb") as f:
        proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=f)
        tee = vault.Tee(proc.stdin, depth=2)
        for c in chunks:
            tee.put(c)
        tee.finish()
        assert proc.wait() == 0
    assert out.read_bytes() == b"".join(chunks)


def test_a_consumer_that_dies_stops_the_producer_with_its_error(tmp_path):
    proc = subprocess.Popen(["head", "-c", "10"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    tee = vault.Tee(proc.stdin, depth=2)
    with pytest.raises(BrokenPipeError):
        for _ in range(64):  # far more than the pipe and the queue hold: the put must fail, not block
            tee.put(os.urandom(1 << 20))
        tee.finish()
    tee.abort()
    assert proc.wait() == 0


def test_a_consumer_gone_when_its_input_is_closed_fails_the_finish(tmp_path):
    """The last bytes a buffered writer held go out at close: an import that died by then fails the
    stream's end with its error (it used to wait forever for a chunk that never came)."""
    proc = subprocess.Popen(["true"], stdin=subprocess.PIPE)
    assert proc.wait() == 0  # gone before the stream starts: nothing it reads, every write fails
    tee = vault.Tee(proc.stdin, depth=2)
    tee.put(b"x" * 100)  # held in the pipe writer's buffer: no write reaches the pipe before the close
    with pytest.raises(BrokenPipeError):
        tee.finish()


def test_streams_take_the_largest_tables_first_and_every_table_once():
    sizes = {"instances": 900, "actions": 500, "events": 400, "a": 10, "b": 10, "c": 5, "empty": 0}
    streams = cut_by_table(sizes, 3)
    assert sorted(t for s in streams for t in s) == sorted(sizes)
    assert [s[0] for s in streams] == ["instances", "actions", "events"]  # each starts with a big one
    loads = sorted(sum(sizes[t] for t in s) for s in streams)
    assert loads[-1] == 900  # the largest table alone is the longest stream: nothing else was added to it
    assert cut_by_table({"x": 1}, 4) == [("x",)]  # no empty streams
