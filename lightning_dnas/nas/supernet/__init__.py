"""SuperNet: coarse-grained, DARTS-like choice between candidate modules.

The user replaces a layer by ``SuperNetModule([candidate_0, ..., candidate_n])``; the
forward returns ``sum_i theta_i * candidate_i(x)`` with ``theta`` computed from the
architecture logits ``alpha`` by softmax, Gumbel-softmax or their hard (one-hot,
straight-through) versions at temperature ``T``. See :mod:`.combiner` for the formulas,
:class:`SuperNetModule` for the module and its hard-mode fast path, and :mod:`.schedule`
for temperature annealing.
"""

from .combiner import HARD_MODES, MODES, gumbel_noise, icv, mixing_weights
from .module import (
    EVAL_MODES,
    SuperNetModule,
    icv_loss,
    set_softmax,
    set_temperature,
    supernet_modules,
)
from .schedule import (
    SCHEDULE_KINDS,
    ConstantTemperature,
    ExponentialTemperature,
    LinearTemperature,
    TemperatureSchedule,
    temperature_schedule,
)

__all__ = [
    "EVAL_MODES",
    "HARD_MODES",
    "MODES",
    "SCHEDULE_KINDS",
    "ConstantTemperature",
    "ExponentialTemperature",
    "LinearTemperature",
    "SuperNetModule",
    "TemperatureSchedule",
    "gumbel_noise",
    "icv",
    "icv_loss",
    "mixing_weights",
    "set_softmax",
    "set_temperature",
    "supernet_modules",
    "temperature_schedule",
]
