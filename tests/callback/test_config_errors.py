"""docs/CALLBACK.md's table of configuration errors is what the code does.

Every row of the table ("when", "error", "cause", "the message contains") is triggered
here: the error must have the row's type, be raised at the row's moment (in
``DNASCallback(...)``, or in the callback's ``setup`` during ``trainer.fit``), and its
message must contain the row's quoted text. The table and the triggers below must list
the same causes, so neither can gain a row the other lacks.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn
from torch.utils.data import DataLoader

from lightning_dnas import PIT, DNASCallback, Stage

from .modules import Classifier, TinySuperNet, TinyTCN, loaders, toy_data

DOC = Path(__file__).parents[2] / "docs" / "CALLBACK.md"


def _table() -> list[dict[str, str]]:
    """The rows of the "Configuration errors" table, cells stripped of their backticks
    where the cell is one code span (when, error, the message contains)."""
    text = DOC.read_text()
    section = text.split("## Configuration errors", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    out = []
    for line in rows:
        when, error, cause, message = (c.strip() for c in line.strip("|").split(" | "))
        out.append({"when": when.strip("`"), "error": error.strip("`"), "cause": cause,
                    "message": message.strip("`")})  # fmt: skip
    return out


# -- the triggers: DNASCallback(...) ------------------------------------------------------

INIT: dict[str, dict[str, Any]] = {
    "unknown `method` (no `stages=` given)": dict(method="darts"),
    "a stage dict with unknown keys": dict(stages=[
        {"kind": "search", "epochs": 1, "method": "pit", "trian": ["masks"]}]),
    "a stage dict without `kind` or `epochs`": dict(stages=[{"kind": "search"}]),
    "unknown stage `kind`": dict(stages=[{"kind": "serach", "epochs": 2, "method": "pit"}]),
    "stage `epochs` not a positive integer": dict(stages=[Stage("search", 0, "pit")]),
    "unknown stage `method`": dict(stages=[Stage("search", 1, "darts")]),
    "a fine-tune stage with a `method`": dict(stages=[Stage("search", 1, "pit"),
                                                       Stage("finetune", 1, "pit")]),
    "unknown name in a stage's `train`": dict(stages=[Stage("search", 1, "pit",
                                                            train=("mask",))]),
    "stage `patience` below 1": dict(stages=[Stage("search", 1, "pit", patience=0)]),
    "a stage list without a search stage": dict(stages=[Stage("finetune", 2)]),
    "a warmup not followed by a search": dict(stages=[
        Stage("warmup", 1, "pit"), Stage("finetune", 1), Stage("search", 1, "pit")]),
    "a warmup of another method than the next search": dict(stages=[
        Stage("warmup", 1, "supernet"), Stage("search", 1, "pit")]),
    "a search stage without a method": dict(stages=[{"kind": "search", "epochs": 2}]),
    "a fine-tune before any search": dict(stages=[Stage("finetune", 1),
                                                   Stage("search", 1, "pit")]),
    "an empty cost dict": dict(cost={}),
    "unknown cost name": dict(cost="flops"),
    "a cost that is no name, `CostModel`, callable or dict": dict(cost=3),
    "unknown `softmax`": dict(softmax="sparsemax"),
    "unknown `search_mode`": dict(search_mode="bilevel"),
    "`mode` neither `\"min\"` nor `\"max\"`": dict(mode="lowest"),
    "`network=` an empty list, or a list with an entry that is not a string or is repeated":
        dict(network=[]),
}  # fmt: skip

# -- the triggers: setup("fit") -----------------------------------------------------------


class _TwoNets(Classifier):
    def __init__(self) -> None:
        super().__init__(TinyTCN())
        self.other = nn.Linear(2, 2)


class _NoNet(Classifier):
    """Builds its network nowhere (neither in __init__ nor in configure_model)."""

    def __init__(self) -> None:
        super().__init__(nn.Identity())
        del self.net

    def configure_model(self) -> None:
        pass


class _TwoChannelBatches(Classifier):
    """Training batches of 2-channel signals for a 1-channel network: the example input
    taken from the first batch does not fit it."""

    def __init__(self) -> None:
        super().__init__(TinyTCN())

    def train_dataloader(self) -> DataLoader:
        x, y = torch.randn(32, 2, 16), torch.randint(0, 3, (32,))
        return DataLoader(list(zip(x, y, strict=True)), batch_size=8)


class _Manual(Classifier):
    def __init__(self) -> None:
        super().__init__(TinyTCN())
        self.automatic_optimization = False


class _DictBatches(Classifier):
    """Training batches are dicts: no first element to take as the example input."""

    def __init__(self) -> None:
        super().__init__(TinyTCN())

    def train_dataloader(self) -> DataLoader:
        data = [{"x": x, "y": y} for x, y in toy_data(32)]
        return DataLoader(data, batch_size=8)


class _ScaledTwoParts(Classifier):
    """A forward that reads a plain attribute besides the two networks it wires."""

    def __init__(self) -> None:
        super().__init__(TinyTCN())
        self.head, self.scale = nn.Linear(3, 3), 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x)) * self.scale


def _fp16() -> dict[str, Any]:
    return {"plugins": [MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))]}


# cause -> (callback arguments, module factory, Trainer arguments)
Fit = tuple[dict[str, Any], Callable[[], L.LightningModule], dict[str, Any]]
SETUP: dict[str, Fit] = {
    "a `converter` option the method of a warmup or search stage does not take": (
        dict(method="supernet", converter={"exclude": ["c1"]}),
        lambda: Classifier(TinySuperNet()), {}),
    "a `strength` (the callback's or a stage's) naming a cost that is not in `cost`": (
        dict(stages=[Stage("search", 1, "pit", strength={"macs": 1.0})]),
        lambda: Classifier(TinyTCN()), {}),
    "a `strength` that is not a number": (
        dict(strength="strong"), lambda: Classifier(TinyTCN()), {}),
    "no example input given and the first training batch's first element is not a tensor": (
        {}, _DictBatches, {}),
    "`Trainer(max_epochs=)` below the stages' sum": (
        {}, lambda: Classifier(TinyTCN()), dict(max_epochs=3)),
    "fp16 grad scaling with manual optimization": ({}, _Manual, _fp16()),
    "`search_mode=\"alternating\"` with `Trainer(limit_val_batches=0)`": (
        dict(search_mode="alternating"), lambda: Classifier(TinyTCN()),
        dict(limit_val_batches=0)),
    "no `network=` and no child module with trainable parameters, even after the module's "
    "`configure_model`": ({}, _NoNet, {}),
    "the network fails on the example input while being converted (a shape or dtype "
    "mismatch); the message names where the example came from": ({}, _TwoChannelBatches, {}),
    "no `network=` and several children with trainable parameters": ({}, _TwoNets, {}),
    "a `network=` list naming an attribute the module does not have, one that is not an "
    "`nn.Module`, or one inside another": (
        dict(network=["net", "nett"]), lambda: Classifier(TinyTCN()), {}),
    "several networks whose module's `forward` does not trace over them (it reads something "
    "else of the module, or a layer does not trace)": (
        dict(network=["net", "head"]), _ScaledTwoParts, {}),
    "the network is already a search network": (
        {}, lambda: Classifier(PIT(TinyTCN(), torch.randn(2, 1, 16))), {}),
}  # fmt: skip

ROWS = _table()


def test_the_table_lists_exactly_the_triggered_causes() -> None:
    causes = [row["cause"] for row in ROWS]
    assert len(causes) == len(set(causes)), "a cause is listed twice"
    assert set(causes) == set(INIT) | set(SETUP)
    for row in ROWS:
        want = "DNASCallback(...)" if row["cause"] in INIT else 'setup("fit")'
        assert row["when"] == want, row["cause"]


def _raised_in_callback_setup(err: BaseException) -> bool:
    return any(frame.name == "setup" and frame.filename.endswith("callback/__init__.py")
               for frame in traceback.extract_tb(err.__traceback__))  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[r["cause"] for r in ROWS])
def test_each_documented_error_is_what_the_code_raises(row: dict[str, str]) -> None:
    message = re.escape(row["message"])
    if row["cause"] in INIT:
        with pytest.raises(Exception, match=message) as info:
            DNASCallback(export_dir=False, **INIT[row["cause"]])
        assert type(info.value).__name__ == row["error"]
        return
    kwargs, module, trainer_kwargs = SETUP[row["cause"]]
    dnas = DNASCallback(export_dir=False, **kwargs)  # the arguments alone are fine
    trainer = L.Trainer(callbacks=[dnas], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, **trainer_kwargs)  # fmt: skip
    train, val = loaders()
    net = module()
    # A module with its own train_dataloader gets no loader from here (it would win).
    train = None if isinstance(net, (_DictBatches, _TwoChannelBatches)) else train
    with pytest.raises(Exception, match=message) as info:
        trainer.fit(net, train, val)
    assert type(info.value).__name__ == row["error"]
    assert _raised_in_callback_setup(info.value), "raised outside the callback's setup"
