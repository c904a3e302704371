"""Read back what an offline W&B run logged, from its run directory.

wandb 0.31 has no Python reader of the run's binary log (``run-<id>.wandb``; the old
``wandb.sdk.internal.datastore`` is gone, the Go core writes the file) and its public ``Api``
needs a server. The file is a LevelDB-style log of ``wandb_internal_pb2.Record`` protobufs:
a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of chunks, each a
7-byte header (CRC-32 of the chunk type byte and the data, length, type: full, first,
middle or last part of a record) and its data; a block's tail shorter than a chunk header
is zero padding. :func:`records` checks every chunk's CRC, so a truncated or misread file
fails loudly instead of yielding garbage.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32 * 1024
CHUNK = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
ArtifactRecord = pb.ArtifactRecord


def records(path: Path) -> Iterator[pb.Record]:
    """Every record of a ``.wandb`` file, in order."""
    data = path.read_bytes()
    if data[: len(HEADER)] != HEADER:
        raise ValueError(f"{path}: not a W&B run log (header {data[:7]!r})")
    pos, parts = len(HEADER), b""
    while pos + CHUNK.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK.size:
            pos += left
            continue
        crc, length, kind = CHUNK.unpack_from(data, pos)
        payload = data[pos + CHUNK.size : pos + CHUNK.size + length]
        if zlib.crc32(payload, zlib.crc32(bytes([kind]))) != crc:
            raise ValueError(f"{path}: bad checksum of the chunk at byte {pos}")
        pos += CHUNK.size + length
        if kind == FULL:
            yield pb.Record.FromString(payload)
        elif kind == FIRST:
            parts = payload
        elif kind == MIDDLE:
            parts += payload
        elif kind == LAST:
            yield pb.Record.FromString(parts + payload)
            parts = b""
        else:
            raise ValueError(f"{path}: unknown chunk type {kind} at byte {pos}")


def _items(items: Any) -> dict[str, Any]:
    """``{key: value}`` of history/summary/config items; a media value (a table) arrives as
    one item per field with ``nested_key = [key, field]`` and is put back together."""
    out: dict[str, Any] = {}
    for item in items:
        keys = list(item.nested_key) or [item.key]
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = json.loads(item.value_json)
    return out


@dataclass
class OfflineRun:
    """What one offline run logged: ``history`` rows, the final ``summary`` (the updates
    applied in order), ``config``, logged ``artifacts`` and the run directory ``root``."""

    root: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    artifacts: list[ArtifactRecord] = field(default_factory=list)

    def series(self, key: str) -> list[Any]:
        """The values of ``key`` in the history rows that have it, in order."""
        return [row[key] for row in self.history if key in row]

    def table(self, key: str) -> dict[str, Any]:
        """The last ``wandb.Table`` logged under ``key``: ``{"columns", "data"}``."""
        ref = self.series(key)[-1]
        return json.loads((self.root / "files" / ref["path"]).read_text())


def read_run(root: Path) -> OfflineRun:
    """Parse the run directory ``root`` (``.../wandb/offline-run-*``)."""
    run = OfflineRun(root)
    for record in records(next(root.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            run.history.append(_items(record.history.item))
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "run":
            run.config.update(_items(record.run.config.update))
        elif kind == "artifact":
            run.artifacts.append(record.artifact)
    return run
