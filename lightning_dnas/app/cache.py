"""Reuse of computed phases across the runs of a sweep.

A phase (a search, or the reference training) is stored in ``<cache_dir>/<key>/`` where
``key`` hashes everything that determines its result (data, model, optimizer, trainer,
seed, the phase's stages, the key of the phase it started from, and the code: the
package's sources and the torch version). Runs that differ only in
later stages (a cascade sweep over PIT lambdas, fine-tune seeds) find the entry and skip the
computation. A file lock per key makes parallel jobs (joblib, SLURM on a shared file system)
compute each entry once: the first takes the lock and computes into ``.<key>.partial`` that
is renamed into place only when complete, the others wait and then read it. A computation
that crashes or is killed leaves its partial folder behind: the next run of the same phase
(the same command again) computes into it again and continues from what was saved there
(the application keeps a checkpoint of every epoch).
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from .results import make_search_id

DONE = "done.json"


def source_fingerprint(package: Path) -> str:
    """SHA-256 (first 12 hex digits) of the torch version and every ``*.py`` file under
    ``package`` (relative paths and contents)."""
    digest = hashlib.sha256(torch.__version__.encode())
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@functools.cache
def code_fingerprint() -> str:
    """:func:`source_fingerprint` of this package: code that could compute a phase
    differently gets other cache entries, so a cache kept across an upgrade or a local
    edit never hands back stale results."""
    return source_fingerprint(Path(__file__).resolve().parents[1])


def entry_key(config: Any) -> str:
    """The cache key of a JSON-able phase ``config`` and :func:`code_fingerprint` (12 hex
    digits)."""
    return make_search_id({"phase": config, "code": code_fingerprint()})


def cached(root: Path | None, config: Any, compute: Callable[[Path], None],
           scratch: Path) -> tuple[Path, bool]:  # fmt: skip
    """The folder holding ``compute``'s output for ``config``, and whether it was reused.

    ``compute(folder)`` writes its files into ``folder``, where it may find those of an
    earlier attempt that did not finish (and continue from them). With ``root`` ``None``
    (no reuse) it runs into ``scratch``. Otherwise the entry ``root/<key>`` is computed at
    most once, under a file lock, in ``root/.<key>.partial``; ``done.json`` (the config)
    marks a complete entry.
    """
    if root is None:
        scratch.mkdir(parents=True, exist_ok=True)
        compute(scratch)
        return scratch, False
    root.mkdir(parents=True, exist_ok=True)
    key = entry_key(config)
    folder = root / key
    with FileLock(str(root / f"{key}.lock")):
        if (folder / DONE).is_file():
            return folder, True
        shutil.rmtree(folder, ignore_errors=True)  # not complete: never read
        partial = root / f".{key}.partial"  # kept on failure, for the next attempt
        partial.mkdir(exist_ok=True)
        compute(partial)
        (partial / DONE).write_text(json.dumps(config, indent=1, sort_keys=True))
        partial.rename(folder)
    return folder, False
