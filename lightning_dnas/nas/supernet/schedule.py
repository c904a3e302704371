"""Temperature annealing schedules: callables ``step -> T`` for :func:`set_temperature`.

``step`` is a non-negative integer (optimizer step or epoch, the caller decides); past
``steps`` the schedules hold their final value. Formulas, with ``s = min(step, steps)``:

- constant:    ``T(step) = t``
- linear:      ``T(step) = t0 + (t1 - t0) * s / steps``
- exponential: ``T(step) = t0 * (t1 / t0) ** (s / steps)`` (geometric interpolation: the
  temperature is multiplied by the same factor ``(t1 / t0) ** (1 / steps)`` each step)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from .combiner import validate_temperature

__all__ = [
    "SCHEDULE_KINDS",
    "ConstantTemperature",
    "ExponentialTemperature",
    "LinearTemperature",
    "TemperatureSchedule",
    "temperature_schedule",
]


class TemperatureSchedule(Protocol):
    """Anything that maps a step (``int >= 0``) to a temperature ``T > 0``."""

    def __call__(self, step: int) -> float:
        """Temperature at ``step``."""
        ...


def _check_step(step: int) -> int:
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return step


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")


@dataclass(frozen=True)
class ConstantTemperature:
    """``T(step) = t`` for every step."""

    t: float

    def __post_init__(self) -> None:
        """Validate ``t`` (finite, ``> 0``)."""
        validate_temperature(self.t)

    def __call__(self, step: int) -> float:
        """Temperature at ``step`` (always ``t``)."""
        _check_step(step)
        return float(self.t)


@dataclass(frozen=True)
class _Ramp:
    """A ramp from ``t0`` to ``t1`` over ``steps`` steps, constant at ``t1`` afterwards."""

    t0: float
    t1: float
    steps: int

    def __post_init__(self) -> None:
        """Validate ``t0``, ``t1`` (finite, ``> 0``) and ``steps`` (``int >= 1``)."""
        validate_temperature(self.t0)
        validate_temperature(self.t1)
        _check_steps(self.steps)

    def fraction(self, step: int) -> float:
        """``min(step, steps) / steps``, in [0, 1]."""
        return min(_check_step(step), self.steps) / self.steps


@dataclass(frozen=True)
class LinearTemperature(_Ramp):
    """Linear ramp ``T(step) = t0 + (t1 - t0) * min(step, steps) / steps``."""

    def __call__(self, step: int) -> float:
        """Temperature at ``step``."""
        return self.t0 + (self.t1 - self.t0) * self.fraction(step)


@dataclass(frozen=True)
class ExponentialTemperature(_Ramp):
    """Geometric ramp ``T(step) = t0 * (t1 / t0) ** (min(step, steps) / steps)``."""

    def __call__(self, step: int) -> float:
        """Temperature at ``step``."""
        return self.t0 * (self.t1 / self.t0) ** self.fraction(step)


SCHEDULE_KINDS: dict[str, type] = {
    "constant": ConstantTemperature,
    "linear": LinearTemperature,
    "exponential": ExponentialTemperature,
}
"""Schedule kind names accepted by :func:`temperature_schedule`."""


def temperature_schedule(kind: str, **kwargs: Any) -> TemperatureSchedule:
    """Build a schedule by kind name: ``"constant"`` (``t``), ``"linear"`` or
    ``"exponential"`` (``t0``, ``t1``, ``steps``), e.g. from a config file.

    Raises:
        ValueError: for an unknown ``kind`` (the message lists the allowed kinds) or
            invalid arguments.
    """
    if kind not in SCHEDULE_KINDS:
        raise ValueError(
            f"unknown temperature schedule {kind!r}; allowed kinds are {list(SCHEDULE_KINDS)}"
        )
    try:
        return SCHEDULE_KINDS[kind](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for the {kind!r} temperature schedule: {err}") from None
