"""The Hydra application end to end, on tiny configurations (a few batches per epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightning_dnas.app.export import load_export
from lightning_dnas.app.pareto.cli import main as pareto_main
from lightning_dnas.app.results import RunResult
from lightning_dnas.app.train import main

# onnx=false: the ONNX export (about 2 s per run) is tested once, in the default cascade
TINY = ["data.datamodule.num_samples=300", "method.warmup_epochs=1", "method.search_epochs=1",
        "method.finetune_epochs=1", "trainer.log_every_n_steps=1", "onnx=false"]  # fmt: skip
CASCADE = ["method.supernet_epochs=1", "method.intermediate_finetune_epochs=1"]


def run(tmp_path: Path, *overrides: str, name: str = "run") -> RunResult:
    main([*TINY, f"hydra.run.dir={tmp_path / name}", f"cache_dir={tmp_path / 'cache'}",
          *overrides])  # fmt: skip
    return RunResult.load(tmp_path / name / "results.json")


def test_default_cascade_writes_results_artifacts_and_the_table(tmp_path, capsys):
    result = run(tmp_path, *CASCADE, "onnx=true")
    out = capsys.readouterr().out
    assert result.method == "cascade" and result.data == "mnist1d"
    assert result.lambdas == {"supernet": {"params": 3e-6}, "pit": {"params": 1e-4}}
    kinds = [s.kind for s in result.stages]
    assert kinds == ["warmup", "search", "finetune", "search", "finetune"]
    assert result.reference.params == 28_266 and result.reference.macs == 1_117_770
    assert 0.0 <= result.final.test["acc"] <= 1.0 and "acc" in result.reference.test
    assert result.final.params == result.stages[-1].params
    run_dir = tmp_path / "run"
    assert "ONNX: " in out and "max |diff|" in out
    for path in ["config.yaml", "export/arch.json", "export/model.pt", "export/model.onnx",
                 "checkpoints/finetune.ckpt", "checkpoints/supernet.ckpt",
                 "checkpoints/pit.ckpt"]:  # fmt: skip
        assert (run_dir / path).is_file(), path
    assert set(json.loads((run_dir / "export/arch.json").read_text())) == {"supernet", "pit"}
    assert_export_is_the_fine_tuned_network(run_dir)
    table = out[out.index("seed network"):]
    for row in ["params (conv+linear)", "MACs per sample", "test acc", "blocks.0.conv",
                "classifier", "32->32 k9 d2"]:  # fmt: skip
        assert row in table


def assert_export_is_the_fine_tuned_network(run_dir: Path) -> None:
    """``export/model.pt`` needs no pickled class (``torch.load``'s default
    ``weights_only=True`` reads it) and :func:`load_export` rebuilds from the run folder
    the network of the fine-tune's checkpoint (the same parameter and buffer names and
    values), which runs on the data's input shape."""
    data = torch.load(run_dir / "export" / "model.pt", weights_only=True)
    assert set(data) == {"format", "structure", "state_dict"}
    net = load_export(run_dir)
    state = torch.load(run_dir / "checkpoints" / "finetune.ckpt", weights_only=False)
    want = {k.removeprefix("net."): v for k, v in state["state_dict"].items()
            if k.startswith("net.")}  # fmt: skip
    have = net.state_dict()
    assert have.keys() == want.keys()
    for key, value in want.items():  # a QAT network's observer switches follow the mode
        if not key.endswith("observer_enabled"):
            assert torch.equal(have[key], value), key
    x = torch.randn(4, 1, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert net.eval()(x).shape == (4, 10)


@pytest.mark.parametrize("method, phases", [
    ("pit", ["pit"]), ("supernet", ["supernet"]), ("pitsupernet", ["pitsupernet"])])
def test_each_method_runs(tmp_path, method, phases):
    result = run(tmp_path, f"method={method}", "softmax=softmax")
    assert result.method == method and list(result.lambdas) == phases
    assert [s.kind for s in result.stages] == ["warmup", "search", "finetune"]
    assert result.final.params <= result.reference.params


def test_cascade_sweep_reuses_the_supernet_phase_and_the_pareto_tool_reads_it(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    main(["-m", *TINY, *CASCADE, "method.strength=1e-6,1e-4", f"hydra.sweep.dir={sweep}",
          f"cache_dir={tmp_path / 'cache'}"])  # fmt: skip
    out = capsys.readouterr().out
    assert out.count("phase supernet: computed") == 1
    assert out.count("phase supernet: reused") == 1
    assert out.count("phase pit: computed") == 2
    runs = [RunResult.load(p) for p in sorted(sweep.glob("*/results.json"))]
    assert sorted(r.lambdas["pit"]["params"] for r in runs) == [1e-6, 1e-4]
    assert runs[0].stages[:3] == runs[1].stages[:3]  # the same coarse phase
    assert pareto_main([str(sweep)]) == 0
    assert (sweep / "pareto.csv").is_file() and (sweep / "pareto.png").is_file()


def test_finetune_seeds_reuse_the_search(tmp_path, capsys):
    first = run(tmp_path, "method=pit", "finetune_seed=1", name="a")
    second = run(tmp_path, "method=pit", "finetune_seed=2", name="b")
    assert "phase pit: reused" in capsys.readouterr().out
    assert first.search_id == second.search_id
    assert (first.finetune_seed, second.finetune_seed) == (1, 2)


def _crash_at(monkeypatch, label: str, epoch: int) -> None:
    """Make the ``label`` fit raise after its ``epoch``-th epoch (1-based), once."""
    from lightning_dnas.app import phases

    original = phases.EpochPrinter.on_train_epoch_end
    fired = []

    def crashing(self, trainer, pl_module):
        original(self, trainer, pl_module)
        if self.label == label and trainer.current_epoch + 1 == epoch and not fired:
            fired.append(True)
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(phases.EpochPrinter, "on_train_epoch_end", crashing)


@pytest.mark.parametrize("label, epoch", [("supernet", 2), ("finetune", 2), ("reference", 3)])
def test_a_crashed_run_continues_where_it_stopped_and_gives_the_same_results(
    tmp_path, capsys, monkeypatch, label, epoch
):
    args = [*TINY, *CASCADE, "method.search_epochs=2", "method.finetune_epochs=2"]
    whole = tmp_path / "whole"
    main([*args, f"hydra.run.dir={whole / 'run'}", f"cache_dir={whole / 'cache'}"])
    expected = RunResult.load(whole / "run" / "results.json")

    crashed = tmp_path / "crashed"
    overrides = [*args, f"cache_dir={crashed / 'cache'}"]
    with monkeypatch.context() as patch:
        _crash_at(patch, label, epoch)
        with pytest.raises((RuntimeError, SystemExit)):
            main([*overrides, f"hydra.run.dir={crashed / 'first'}"])
    assert not (crashed / "first" / "results.json").exists()
    partial = [p for p in (crashed / "cache").iterdir() if p.name.endswith(".partial")]
    assert len(partial) == 1 and (partial[0] / "resume" / "last.ckpt").is_file()
    capsys.readouterr()

    main([*overrides, f"hydra.run.dir={crashed / 'again'}"])
    out = capsys.readouterr().out
    # the crash came before that epoch's checkpoint: the fit continues after the one before
    assert f"resuming after epoch {epoch - 1}/" in out
    assert not any(p.name.endswith(".partial") for p in (crashed / "cache").iterdir())
    again = RunResult.load(crashed / "again" / "results.json")
    assert again.stages == expected.stages
    assert (again.final, again.reference, again.arch) == (
        expected.final, expected.reference, expected.arch)


def test_the_same_run_again_reuses_every_part_and_gives_the_same_results(tmp_path, capsys):
    first = run(tmp_path, "method=pit", name="a")
    capsys.readouterr()
    again = run(tmp_path, "method=pit", name="b")
    out = capsys.readouterr().out
    assert "phase pit: reused" in out and "fine-tune: reused" in out
    assert "] epoch" not in out  # no training at all
    assert (again.stages, again.final, again.reference) == (
        first.stages, first.final, first.reference)
    assert (tmp_path / "b" / "checkpoints" / "finetune.ckpt").is_file()


def test_onnx_export_is_optional_and_a_missing_extra_does_not_fail_the_run(
    tmp_path, capsys, monkeypatch
):
    result = run(tmp_path, "method=pit", name="off")  # TINY has onnx=false
    assert result.final.params > 0 and not (tmp_path / "off" / "export" / "model.onnx").exists()

    import lightning_dnas.app.train as app_train

    def missing(*args, **kwargs):
        raise ModuleNotFoundError("ONNX export needs onnxruntime")

    monkeypatch.setattr(app_train, "export_onnx", missing)
    run(tmp_path, "method=pit", "onnx=true", name="missing")
    assert "ONNX export skipped: ONNX export needs onnxruntime" in capsys.readouterr().out
    assert (tmp_path / "missing" / "results.json").is_file()
