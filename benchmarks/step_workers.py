"""Interleaved step timing with every variant in its own worker process.

Why separate processes: with glibc's default heap (no allocator tuning, as users run a
training), whether a step's activations land on fresh pages (a page fault per 4 KiB)
depends on the heap layout; in one process that layout is left by the *other* variant, so
the measured ratio changes from run to run by more than the difference being measured.
One process per variant gives each variant its own heap, as in a user's training, while
the parent still interleaves single steps (only one worker runs at a time, the others
wait on their pipe), so all variants see the same background load.

Why several processes per variant (``processes``): with the default heap, the number of
page faults a step takes (counted per step: :attr:`Timings.faults`) differs from process
to process and from step to step (MobileNetV1's step, 2 threads: 1,000 to 21,000 minor
faults, i.e. 4-80 MiB of fresh pages, for the same variant), and the step time follows
it. The state is a function of the process's start (the same ``PYTHONHASHSEED`` with
address randomisation off repeats a worker's fault counts step for step), so it belongs
to glibc's heap, not to either variant, and a ratio taken from one process per variant
inherits it. Several processes per variant sample it instead: each process is one draw of
the heap state a user's training starts in; :func:`process_ratio` averages the processes'
median step times and gives the ratio's standard error, and the range of the per-process
ratios says how far one process alone could be off.

A variant is a picklable ``(builder, args)`` pair: ``builder(*args)`` runs in the worker
and returns the step closure. Workers are started with ``spawn`` (a fresh interpreter, no
inherited heap).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import random
import resource
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

Builder = Callable[..., Callable[[], None]]


def steady_heap() -> bool:
    """Make glibc malloc keep freed memory (no mmap for large blocks, no trimming), as a
    caching allocator does: without this, whether a step's activations land on fresh pages
    (a page fault per 4 KiB) depends on the heap layout left by the *other* variant, which
    adds milliseconds of noise to either variant (``pit_step.py --heap steady``). Returns
    whether it was applied."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def compiled_frames() -> int:
    """Frames dynamo compiled in this process so far (each recompilation counts one)."""
    from torch._dynamo.utils import counters

    return int(counters["frames"]["ok"])


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
"""``wall``: elapsed time; ``cpu``: the worker's CPU time (user + system, all threads, page
faults included), immune to other jobs waiting for the cores but blind to what the
other jobs' cache traffic costs; with one thread it is the single-core cost of a step."""


def _worker(conn: Any, builder: Builder, args: tuple[Any, ...], threads: int,
            heap: str, clock_name: str) -> None:  # fmt: skip
    """Worker loop: build the step, then answer the parent's commands."""
    clock = CLOCKS[clock_name]
    torch.set_num_threads(threads)
    if heap == "steady":
        steady_heap()
    step = builder(*args)
    while True:
        command, n = conn.recv()
        if command == "exit":
            conn.send(None)
            return
        times, faults = [], []
        for _ in range(n):
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = clock()
            step()
            times.append(clock() - t0)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
        conn.send({"times": times, "faults": faults, "frames": compiled_frames()})


@dataclass
class Timings:
    """One variant's results, pooled over its worker processes: timed step seconds and
    the minor page faults of each step (``process[i]`` = the index of the worker that ran
    step ``i``), warm-up step seconds of the first worker (its first step includes
    compilation), and the frames dynamo compiled, summed over the workers, after warm-up
    and at the end (equal when nothing recompiled)."""

    times: list[float] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)
    process: list[int] = field(default_factory=list)
    warmup: list[float] = field(default_factory=list)
    frames_after_warmup: int = 0
    frames: int = 0

    def process_medians(self) -> list[float]:
        """Median step seconds of each worker process, in worker order."""
        workers = sorted(set(self.process))
        return [statistics.median(t for t, p in zip(self.times, self.process, strict=True)
                                  if p == w) for w in workers]  # fmt: skip


def run_interleaved(
    variants: Mapping[str, tuple[Builder, tuple[Any, ...]]],
    rounds: int,
    steps_per_round: int = 1,
    warmup: int = 5,
    threads: int = 2,
    heap: str = "default",
    clock: str = "wall",
    processes: int = 1,
    at_once: int = 4,
) -> dict[str, Timings]:
    """Run ``processes`` workers per variant, ``at_once`` per variant at a time (a batch:
    each worker holds a network and its heap, so all of them at once would not fit in
    memory): in each batch the workers are warmed up one after the other (compilations
    do not compete for the cores), then run ``rounds`` rounds in which every worker
    (variant 1 process 1, variant 2 process 1, ..., variant 1 process 2, ...) runs
    ``steps_per_round`` steps in turn. Returns each variant's :class:`Timings`, pooled
    over its processes (``clock``: a key of :data:`CLOCKS`)."""
    if processes < 1 or at_once < 1:
        raise ValueError(f"processes and at_once must be >= 1, got {processes}, {at_once}")
    out = {name: Timings() for name in variants}
    for first in range(0, processes, at_once):
        batch = _run_batch(variants, rounds, steps_per_round, warmup, threads, heap, clock,
                           range(first, min(first + at_once, processes)))  # fmt: skip
        for name, t in batch.items():
            o = out[name]
            o.times += t.times
            o.faults += t.faults
            o.process += t.process
            o.warmup = o.warmup or t.warmup
            o.frames_after_warmup += t.frames_after_warmup
            o.frames += t.frames
    return out


def process_ratio(base: Timings, other: Timings) -> tuple[float, float]:
    """``other`` / ``base`` over processes, with its standard error: each worker process is
    one draw of the heap state a training starts in, so a variant's time is the mean of
    its processes' median step times, ``m = mean_k t_k`` with standard error
    ``sd(t) / sqrt(n)``, and the ratio's error is ``r * sqrt((e_o / m_o)^2 + (e_b / m_b)^2)``
    (0 with one process)."""

    def mean_error(t: Timings) -> tuple[float, float]:
        per = t.process_medians()
        sd = statistics.stdev(per) if len(per) > 1 else 0.0
        return statistics.mean(per), sd / len(per) ** 0.5

    (mb, eb), (mo, eo) = mean_error(base), mean_error(other)
    ratio = mo / mb
    return ratio, ratio * ((eo / mo) ** 2 + (eb / mb) ** 2) ** 0.5


def fault_adjusted_ratio(base: Timings, other: Timings) -> float:
    """``other`` / ``base`` at equal page faults: per variant a least-squares line
    ``time = a + b * faults`` over all its steps, both lines read at the mean fault count
    of all steps of both variants. It removes what the heap's state adds to a step (a
    fault costs the same in either variant), not what a variant does: only meaningful
    while the two variants' fault distributions overlap (compare the faults/step column).
    """

    def line(t: Timings) -> tuple[float, float]:
        if len(set(t.faults)) < 2:  # no spread in faults (a steady heap has none): no slope
            return statistics.mean(t.times), 0.0
        slope, intercept = statistics.linear_regression([float(f) for f in t.faults], t.times)
        return intercept, slope

    at = statistics.mean([*base.faults, *other.faults])
    (ab, bb), (ao, bo) = line(base), line(other)
    return (ao + bo * at) / (ab + bb * at)


def fault_adjusted_error(base: Timings, other: Timings, draws: int = 400,
                         seed: int = 0) -> float:  # fmt: skip
    """Standard error of :func:`fault_adjusted_ratio` over processes: the standard
    deviation of the ratio over ``draws`` bootstrap resamples, each variant's worker
    processes drawn with replacement (all steps of a drawn process kept together: the
    process, not the step, is the draw of the heap's state)."""

    def by_process(t: Timings) -> list[tuple[list[float], list[int]]]:
        workers = sorted(set(t.process))
        return [([x for x, p in zip(t.times, t.process, strict=True) if p == w],
                 [f for f, p in zip(t.faults, t.process, strict=True) if p == w])
                for w in workers]  # fmt: skip

    def resample(groups: list[tuple[list[float], list[int]]], rng: random.Random) -> Timings:
        out = Timings()
        for k, (times, faults) in enumerate(rng.choices(groups, k=len(groups))):
            out.times += times
            out.faults += faults
            out.process += [k] * len(times)
        return out

    rng = random.Random(seed)
    groups_b, groups_o = by_process(base), by_process(other)
    if len(groups_b) < 2 or len(groups_o) < 2:
        return 0.0
    ratios = [fault_adjusted_ratio(resample(groups_b, rng), resample(groups_o, rng))
              for _ in range(draws)]  # fmt: skip
    return statistics.stdev(ratios)


def _run_batch(
    variants: Mapping[str, tuple[Builder, tuple[Any, ...]]],
    rounds: int,
    steps_per_round: int,
    warmup: int,
    threads: int,
    heap: str,
    clock: str,
    indices: range,
) -> dict[str, Timings]:
    """One batch of :func:`run_interleaved`: workers ``indices`` of every variant."""
    ctx = mp.get_context("spawn")
    pipes, procs = {}, []
    for k in indices:
        for name, (builder, args) in variants.items():
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker,
                               args=(child, builder, args, threads, heap, clock),
                               daemon=True)  # fmt: skip
            proc.start()
            pipes[name, k], procs = parent, [*procs, proc]
    out = {name: Timings() for name in variants}
    try:
        for (name, k), pipe in pipes.items():
            pipe.send(("step", warmup))
            reply = pipe.recv()
            if k == indices[0]:
                out[name].warmup = reply["times"]
            out[name].frames_after_warmup += reply["frames"]
        last_frames = {}
        for _ in range(rounds):
            for (name, k), pipe in pipes.items():
                pipe.send(("step", steps_per_round))
                reply = pipe.recv()
                out[name].times.extend(reply["times"])
                out[name].faults.extend(reply["faults"])
                out[name].process.extend([k] * len(reply["times"]))
                last_frames[name, k] = reply["frames"]
        for (name, _), frames in last_frames.items():
            out[name].frames += frames
    finally:
        for pipe in pipes.values():
            try:
                pipe.send(("exit", 0))
                pipe.recv()
            except (BrokenPipeError, EOFError):
                pass
        for proc in procs:
            proc.join(timeout=30)
    return out
