"""Checks of a run's configuration and output directory, before any work is done, so
that bad input stops the run with one clear message and no results are written."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lightning_dnas.nas.methods import METHODS
from lightning_dnas.stages import RECIPES

# The application's costs: `cost=` and the keys of `budget.` (every one a built-in cost).
COSTS = ("params", "macs", "peak_ram", "flash")


class ConfigError(ValueError):
    """A configuration value the application cannot run with; the message names the key."""


def _number(cfg: DictConfig, key: str, positive: bool = False) -> float:
    value: Any = OmegaConf.select(cfg, key)
    try:
        number = float(value)
        if isinstance(value, bool) or math.isnan(number):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number, got {value!r} "
                          f"(e.g. {key}=1e-6)") from None  # fmt: skip
    if number < 0 or (positive and number == 0):
        raise ConfigError(f"{key} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return number


def _epochs(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{key} must be a non-negative integer, got {value!r}")


def check_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for a value the run cannot use: a lambda, ICV strength
    or learning rate that is not a non-negative number, an unknown method or cost, a
    SuperNet method for a model without a SuperNet variant, bad epoch counts or seeds, a
    bad budget (:func:`read_budget`)."""
    method = cfg.method
    if method.name not in (*METHODS, *RECIPES):
        raise ConfigError(f"method.name {method.name!r} is unknown; valid: "
                          f"{[*METHODS, *RECIPES]}")  # fmt: skip
    _number(cfg, "method.strength")
    if method.name == "cascade":
        _number(cfg, "method.supernet_strength")
        for key in ("supernet_epochs", "intermediate_finetune_epochs"):
            _epochs(cfg, f"method.{key}")
    for key in ("warmup_epochs", "search_epochs", "finetune_epochs"):
        _epochs(cfg, f"method.{key}")
    if method.search_epochs < 1:
        raise ConfigError("method.search_epochs must be >= 1")
    _number(cfg, "icv")
    _number(cfg, "arch_lr", positive=True)
    _number(cfg, "softmax.temperature", positive=True)
    for key in ("seed", "finetune_seed"):
        if not isinstance(OmegaConf.select(cfg, key), int):
            raise ConfigError(f"{key} must be an integer, got {OmegaConf.select(cfg, key)!r}")
    if cfg.cost not in COSTS:
        raise ConfigError(f"cost {cfg.cost!r} is unknown; valid: {list(COSTS)}")
    read_budget(cfg)
    needs_choices = method.name in RECIPES or METHODS[method.name].searches_choices
    if needs_choices and cfg.model.get("supernet") is None:
        raise ConfigError(f"model {cfg.model.name!r} has no SuperNet variant, so method "
                          f"{method.name!r} cannot run on it; use method=pit")  # fmt: skip


def read_budget(cfg: DictConfig) -> dict[str, float]:
    """``{cost: B}`` of the config's ``budget`` node (unset costs left out; a config
    without the node: no budget). Raises :class:`ConfigError` naming ``budget.<cost>`` for
    an unknown cost (listing the valid ones) or a value that is not a positive number."""
    budget: dict[str, float] = {}
    for name, value in dict(cfg.get("budget") or {}).items():
        key = f"budget.{name}"
        if name not in COSTS:  # reachable with +budget.<name>=...; Hydra refuses the rest
            raise ConfigError(f"{key}: {name!r} is not a cost; valid: {list(COSTS)}")
        if value is None:
            continue
        # bool is an int to Python, and Hydra reads budget.params=true as one
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a positive number, got {value!r} "
                              f"(e.g. {key}=5000)")  # fmt: skip
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{key} must be a positive finite number, got {value!r}")
        budget[name] = float(value)
    return budget


def check_output_dir(out: Path) -> None:
    """Raise :class:`ConfigError` unless files can be created in ``out``."""
    probe = out / ".write_test"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"output directory {out} is not writable: {err}") from None
