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


def test_a_failure_leaves_no_entry_and_the_next_attempt_continues_its_partial(tmp_path):
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
    entries = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert [e for e in entries if not e.startswith(".")] == [folder.name]  # nothing complete
    assert counter.read_text() == "x"

    # the next attempt computes in the partial folder the failed one left, and finds its files
    seen = []

    def resume(folder: Path) -> None:
        seen.append((folder / "half.txt").read_text())
        (folder / "out.txt").write_text("done")

    folder2, reused = cached(root, {"a": 2}, resume, tmp_path / "s")
    assert seen == ["half"] and not reused and (folder2 / "out.txt").is_file()
    assert not any(p.name.endswith(".partial") for p in root.iterdir())


def test_without_a_cache_dir_it_computes_in_the_scratch_folder(tmp_path):
    counter = tmp_path / "count"
    folder, reused = cached(None, {"a": 1}, _slow_compute(counter), tmp_path / "s")
    assert (folder, reused) == (tmp_path / "s", False)


def test_source_fingerprint_follows_every_source_file(tmp_path):
    from lightning_dnas.app.cache import source_fingerprint

    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("not code")
    first = source_fingerprint(tmp_path)
    assert len(first) == 12 and first == source_fingerprint(tmp_path)
    (tmp_path / "notes.txt").write_text("still not code")
    assert source_fingerprint(tmp_path) == first
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")
    edited = source_fingerprint(tmp_path)
    assert edited != first
    (tmp_path / "sub" / "b.py").rename(tmp_path / "b.py")  # same content, other place
    assert source_fingerprint(tmp_path) not in (first, edited)


def test_an_entry_of_other_code_is_not_reused(tmp_path, monkeypatch):
    import lightning_dnas.app.cache as cache

    calls = []

    def compute(folder: Path) -> None:
        calls.append(folder)
        (folder / "out.txt").write_text("done")

    assert cache.code_fingerprint() == cache.code_fingerprint()  # stable within a process
    cached(tmp_path, {"phase": "pit"}, compute, tmp_path / "s")
    assert cached(tmp_path, {"phase": "pit"}, compute, tmp_path / "s")[1] is True
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "0123456789ab")
    folder, reused = cached(tmp_path, {"phase": "pit"}, compute, tmp_path / "s")
    assert not reused and len(calls) == 2 and (folder / "out.txt").is_file()
