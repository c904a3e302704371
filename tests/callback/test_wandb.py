"""W&B logging of the callback, read back from offline run directories: per-step and
per-epoch keys and values, the export tables, artifacts and summary, ``wandb.finish()``
between two fits in one process, and a fit without wandb importable."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import CSVLogger

from lightning_dnas import DNASCallback, cascade_stages, load_network
from lightning_dnas.callback import CHOICE_COLUMNS, LAYER_COLUMNS
from tests.support import conv_linear_costs

from ..wandb_records import ArtifactRecord, OfflineRun, read_run
from .modules import Classifier, TinySuperNet, TinyTCN, loaders
from .two_part import NAMES, TwoPart

wandb = pytest.importorskip("wandb")
from lightning.pytorch.loggers import WandbLogger  # noqa: E402  (after the skip on purpose)


def _fit(save_dir: Path, net: torch.nn.Module, callback: DNASCallback) -> Path:
    """One fit with a WandbLogger (of ``Classifier(net)``, or of ``net`` itself when it is
    a LightningModule), finished with ``wandb.finish()`` as the app does between multirun
    jobs; returns the run directory."""
    train, val = loaders()
    logger = WandbLogger(project="dnas-test", save_dir=save_dir, offline=True)
    trainer = L.Trainer(logger=logger, callbacks=[callback], log_every_n_steps=1,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(net if isinstance(net, LightningModule) else Classifier(net), train, val)
    root = Path(logger.experiment.dir).parent
    wandb.finish()
    return root


def _read(*roots: Path) -> list[OfflineRun]:
    """The runs' logs, read after ``wandb.teardown()``: ``finish`` returns before the W&B
    service has necessarily written the whole binary log; stopping the service flushes it
    (a later ``wandb.init`` starts a new service)."""
    wandb.teardown()
    return [read_run(root) for root in roots]


def _staged(artifact: ArtifactRecord) -> dict[str, Path]:
    """Artifact file name -> its staged copy (offline runs keep it for a later sync)."""
    return {e.path: Path(e.local_path) for e in artifact.manifest.contents}


def test_a_cascade_logs_costs_thetas_tables_artifacts_and_summary(wandb_offline):
    torch.manual_seed(0)
    cb = DNASCallback(stages=cascade_stages(supernet=2, pit=1, finetune=1,
                                            intermediate_finetune=1),
                      icv=0.1, temperature=2.0, strength=1e-6,
                      export_dir=wandb_offline / "files")  # fmt: skip
    exports = wandb_offline / "files"
    [run] = _read(_fit(wandb_offline, TinySuperNet(), cb))
    search_steps = 3 * 6  # 2 SuperNet + 1 PIT search epochs of 96 samples in batches of 16

    # Per step: the regulariser, the soft cost and (with choices) ICV, in search stages only.
    reg, soft = run.series("dnas/reg_step"), run.series("dnas/soft_params_step")
    assert len(reg) == len(soft) == search_steps
    assert len(run.series("dnas/icv_step")) == 2 * 6  # the PIT network has no choices
    lam = 1e-6
    assert all(r == pytest.approx(lam * s, rel=1e-5) for r, s in zip(reg, soft, strict=True))
    assert len(run.series("dnas/reg_epoch")) == 3
    # Per epoch of a search: hard cost, temperature and one theta line per candidate.
    hard = run.series("dnas/hard_params")
    assert len(hard) == 3 and all(h == int(h) for h in hard)
    assert run.series("dnas/temperature") == [2.0, 2.0]
    thetas = [run.series(f"dnas/theta/choice/{c}") for c in ("conv3", "conv5", "skip")]
    assert all(len(t) == 2 for t in thetas)
    assert [sum(p) for p in zip(*thetas, strict=True)] == pytest.approx([1.0, 1.0])
    assert run.series("train_loss") and run.series("val_loss")  # the user's own metrics

    # Each export: tables, two artifact versions aliased with the stage, final costs.
    assert [r["stage"] for r in cb.history] == ["0-search-supernet", "2-search-pit"]
    for record in cb.history:
        stage = record["stage"]
        layers = run.table(f"dnas/{stage}/layers")
        assert layers["columns"] == LAYER_COLUMNS
        assert [row[0] for row in layers["data"]][-1] == "fc"
        assert all(row[2] <= row[3] and row[4] <= row[5] for row in layers["data"])
        choices = run.table(f"dnas/{stage}/choices")
        assert choices["columns"] == CHOICE_COLUMNS
        expected = [[n, c["index"], c["name"]] for n, c in record["arch"]["choices"].items()]
        assert choices["data"] == expected
        assert len(choices["data"]) == (1 if stage.endswith("supernet") else 0)
        mine = [a for a in run.artifacts if a.name.startswith("dnas-") and stage in a.aliases]
        assert sorted(a.type for a in mine) == ["dnas-architecture", "model"]
        for artifact in mine:
            assert json.loads(artifact.metadata)["costs"] == record["costs"]
            files = _staged(artifact)
            if artifact.type == "model":
                # The form of <stage>.pt: no pickled class, the same weights as that file.
                data = torch.load(files["model.pt"], weights_only=True)
                pt = torch.load(exports / f"{stage}.pt", weights_only=True)
                assert data["structure"] == pt["structure"]
                assert data["state_dict"].keys() == pt["state_dict"].keys()
                assert all(torch.equal(v, pt["state_dict"][k])
                           for k, v in data["state_dict"].items())  # fmt: skip
                net = load_network(TinySuperNet(), files["model.pt"])
                assert net(torch.randn(2, 1, 16)).shape == (2, 3)
            else:
                assert json.loads(files["arch.json"].read_text()) == record
    # The PIT search ran one epoch, so its best state is that epoch's: the last hard cost
    # logged is the exported network's, and the summary holds the last export's costs.
    assert hard[-1] == cb.history[-1]["costs"]["params"] == run.summary["dnas/final_params"]
    assert run.summary["dnas/reg_step"] == reg[-1]


def test_wandb_finish_between_fits_starts_a_clean_run(wandb_offline):
    one = _fit(wandb_offline / "a", TinyTCN(), DNASCallback(search_epochs=1, finetune_epochs=1,
                                                      export_dir=False))  # fmt: skip
    cb = DNASCallback(search_epochs=1, finetune_epochs=1, cost={"params": "params",
                      "macs": "macs"}, strength={"params": 1e-6}, export_dir=False)  # fmt: skip
    first, second = _read(one, _fit(wandb_offline / "b", TinyTCN(), cb))
    assert first.root != second.root
    assert "dnas/soft_macs_step" not in first.summary
    assert len(second.series("dnas/soft_macs_step")) == 6
    assert second.summary["dnas/final_macs"] == cb.history[0]["costs"]["macs"]
    assert [a.name.split("-")[-1] for a in second.artifacts if a.name.startswith("dnas-")] == [
        second.root.name.split("-")[-1]] * 2  # fmt: skip
    # A history row with a temperature or theta would mean a choice that TinyTCN lacks.
    assert not [k for row in second.history for k in row if "theta" in k or "temper" in k]
    assert not math.isnan(second.summary["dnas/soft_params_epoch"])


def test_several_networks_log_the_layers_and_the_network_of_both_parts(wandb_offline):
    torch.manual_seed(0)
    exports = wandb_offline / "files"
    cb = DNASCallback("pit", network=NAMES, search_epochs=2, finetune_epochs=1, arch_lr=0.05,
                      strength=1e-3, export_dir=exports)  # fmt: skip
    module = TwoPart()
    [run] = _read(_fit(wandb_offline, module, cb))
    [record] = cb.history
    stage = record["stage"]
    rows = {row[0]: dict(zip(LAYER_COLUMNS, row, strict=True))
            for row in run.table(f"dnas/{stage}/layers")["data"]}  # fmt: skip
    assert set(rows) == {"backbone.c1", "backbone.c2", "head"}
    kept = record["arch"]["modules"]["backbone.c2"]["out"]
    assert kept is not None and len(kept) < 8, "the search removed none of the shared channels"
    assert rows["backbone.c2"]["out_channels"] == len(kept) == module.head.in_features
    assert rows["head"]["out_channels"] == rows["head"]["original"] == 3  # the output stays
    [model] = [a for a in run.artifacts if a.type == "model" and stage in a.aliases]
    staged = _staged(model)["model.pt"]
    data, pt = (torch.load(p, weights_only=True) for p in (staged, exports / f"{stage}.pt"))
    assert data["structure"] == pt["structure"]
    assert all(torch.equal(v, pt["state_dict"][k]) for k, v in data["state_dict"].items())
    group = load_network(TwoPart(), staged).eval()  # both parts, the module's forward
    assert group.head.in_features == len(kept)
    x = torch.randn(4, 1, 16)
    params, _ = conv_linear_costs(group, x)  # the backbone's and the head's together
    assert params == record["costs"]["params"] == run.summary["dnas/final_params"]
    # One hard cost per search epoch (epochs 0 and 1): the best one's is the export's.
    assert run.series("dnas/hard_params")[record["best_epoch"]] == params


def test_the_callback_needs_no_wandb(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # any `import wandb` now fails
    train, val = loaders()
    cb = DNASCallback(search_epochs=1, finetune_epochs=1, export_dir=False)
    trainer = L.Trainer(logger=CSVLogger(tmp_path), callbacks=[cb], enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(Classifier(TinyTCN()), train, val)
    assert cb.exported is not None and "dnas/hard_params" in trainer.logged_metrics
