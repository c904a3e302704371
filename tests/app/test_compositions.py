"""Every thesis experiment config composes, and its data module, seed and SuperNet
networks and callback stages instantiate (the data is not read: the folders need not exist)."""

from __future__ import annotations

from importlib import resources

import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from lightning_dnas import DNASCallback
from lightning_dnas.app.checks import check_config
from lightning_dnas.app.phases import plan

EXPERIMENTS = sorted(p.name.removesuffix(".yaml") for p in
                     (resources.files("lightning_dnas.conf") / "experiment").iterdir()
                     if p.name.endswith(".yaml"))  # fmt: skip
NUM_CLASSES = {"cifar10": 10, "kws": 12, "vww": 2}


def test_all_thesis_tables_have_a_config():
    expected = {f"{b}_{m}" for b in ("icl", "kws", "vww") for m in ("pit", "supernet", "cascade")}
    expected |= {"icl_pitsupernet", "kws_pitsupernet", "icl_supernet_softmax",
                 "icl_supernet_icv", "icl_supernet_gumbel", "kws_supernet_shared_bn"}  # fmt: skip
    assert set(EXPERIMENTS) == expected


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_instantiates(name):
    with initialize_config_module("lightning_dnas.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)
    check_config(cfg)
    dm = instantiate(cfg.data.datamodule)
    assert type(dm).__name__ == cfg.data.datamodule._target_.rsplit(".", 1)[1]
    start, phases = plan(cfg.method)
    net = instantiate(cfg.model[start])
    assert net.classifier.out_features == NUM_CLASSES[cfg.data.name]
    for phase in phases:
        DNASCallback(stages=phase.stages, strength=phase.strength, softmax=cfg.softmax.mode)
    assert phases[-1].stages[-1].patience == 20 and cfg.softmax.temperature == 1.0


@pytest.mark.parametrize("launcher, target", [("joblib_local", "JoblibLauncher"),
                                              ("slurm", "SlurmLauncher")])
def test_launcher_configs_compose(launcher, target):
    with initialize_config_module("lightning_dnas.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}"],
                      return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
