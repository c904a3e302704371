"""docs/CALLBACK.md's LightningCLI section, run as shown: the command line and the YAML
build the DNASCallback they write, and the YAML's configuration fits."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from lightning import LightningDataModule

from lightning_dnas import DNASCallback

from .modules import Classifier, TinyTCN, loaders

pytest.importorskip("jsonargparse")
from lightning.pytorch.cli import LightningCLI  # after the skip: it needs jsonargparse

DOC = Path(__file__).resolve().parents[2] / "docs" / "CALLBACK.md"


def _blocks(lang: str) -> list[str]:
    """The section's code blocks of one language."""
    text = DOC.read_text()
    section = text[text.index("## LightningCLI"):text.index("## A module shaped differently")]
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


class MyModule(Classifier):
    """The test classifier, built from arguments as LightningCLI does."""

    def __init__(self, channels: int = 6) -> None:
        super().__init__(TinyTCN(channels))


class MyData(LightningDataModule):
    """The toy loaders as a datamodule."""

    def train_dataloader(self):
        return loaders()[0]

    def val_dataloader(self):
        return loaders()[1]


def _cli(args: list[str]) -> LightningCLI:
    return LightningCLI(MyModule, MyData, run=False, args=args,
                        trainer_defaults={"logger": False, "enable_progress_bar": False,
                                          "enable_checkpointing": False,
                                          "enable_model_summary": False})  # fmt: skip


def _dnas(cli: LightningCLI) -> DNASCallback:
    [dnas] = [c for c in cli.trainer.callbacks if isinstance(c, DNASCallback)]
    return dnas


def test_the_train_py_shown_is_a_plain_lightning_cli():
    [train_py] = _blocks("python")
    assert "LightningCLI(MyModule, MyData)" in train_py


def test_the_command_line_builds_the_callback(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    [command] = _blocks("bash")
    words = shlex.split(command.replace("\\\n", " "))  # the shell's line continuations
    assert words[:3] == ["python", "train.py", "fit"]
    dnas = _dnas(_cli(words[3:]))
    assert [(s.kind, s.epochs, s.method) for s in dnas.stages] == [
        ("warmup", 1, "pit"), ("search", 3, "pit"), ("finetune", 2, None)]  # fmt: skip
    assert dnas.strength == 1e-5 and str(dnas.export_dir) == "dnas_out"


def test_the_yaml_builds_the_callback_and_fits(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    [config] = _blocks("yaml")
    (tmp_path / "dnas.yaml").write_text(config)
    cli = _cli(["--config", "dnas.yaml"])
    dnas = _dnas(cli)
    want = yaml.safe_load(config)["trainer"]["callbacks"][0]["init_args"]
    assert set(dnas.costs) == set(want["cost"])
    assert dict(dnas.strength) == want["strength"]
    assert [(s.kind, s.epochs, s.method, s.patience) for s in dnas.stages] == [
        (d["kind"], d["epochs"], d.get("method"), d.get("patience")) for d in want["stages"]]
    assert dnas.converter == want["converter"]
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.current_epoch == sum(d["epochs"] for d in want["stages"])
    assert (tmp_path / "dnas_out" / "final.pt").exists()
