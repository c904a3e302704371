"""Phase reuse: computed once per key, also by parallel processes; incomplete entries are
never read."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from lightning_dnas.app.cache import cached


def _slow_compute(counter: Path):
    def compute(folder: Path) -> None:
        with counter.open("a") as f:
            f.write("x")
        time.sleep(0.5)  # long enough for the other process to wait on the lock
        (folder / "out.txt").write_text("done")

    return compute


def _job(root: str, counter: str) -> None:
    cached(Path(root), {"phase": "supernet"}, _slow_compute(Path(counter)), Path(root) / "s")


def test_two_processes_compute_an_entry_once(tmp_path):
    counter = tmp_path / "count"
    ctx = multiprocessing.get_context("fork")  # fork: no second torch import
    jobs = [ctx.Process(target=_job, args=(str(tmp_path / "c"), str(counter))) for _ in range(2)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(60)
    assert [job.exitcode for job in jobs] == [0, 0]
    assert counter.read_text() == "x"


def test_a_different_key_computes_and_a_failure_leaves_no_entry(tmp_path):
    counter = tmp_path / "count"
    root = tmp_path / "c"
    folder, reused = cached(root, {"a": 1}, _slow_compute(counter), tmp_path / "s")
    assert not reused and (folder / "out.txt").read_text() == "done"
    assert cached(root, {"a": 1}, _slow_compute(counter), tmp_path / "s") == (folder, True)

    def fail(folder: Path) -> None:
        (folder / "half.txt").write_text("half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        cached(root, {"a": 2}, fail, tmp_path / "s")
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [folder.name]
    assert counter.read_text() == "x"


def test_without_a_cache_dir_it_computes_in_the_scratch_folder(tmp_path):
    counter = tmp_path / "count"
    folder, reused = cached(None, {"a": 1}, _slow_compute(counter), tmp_path / "s")
    assert (folder, reused) == (tmp_path / "s", False)
