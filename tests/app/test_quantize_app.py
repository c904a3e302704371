"""``quantize=int8`` in the application: a quantisation-aware fine-tune, the int8 ONNX
file, its numbers in results.json, the table and the Pareto tool, and the bad values."""

from __future__ import annotations

import json

import onnx
import pytest

from lightning_dnas.app.export import load_export
from lightning_dnas.app.pareto.cli import main as pareto_main
from lightning_dnas.app.results import RunResult
from lightning_dnas.app.train import main
from lightning_dnas.quantize import QATNetwork

from .test_bad_input import _fails
from .test_train import assert_export_is_the_fine_tuned_network, run

INT8 = ["method=pit", "quantize=int8", "method.finetune_epochs=2", "reference=false"]


def test_an_int8_run_writes_and_reports_the_int8_network(tmp_path, capsys):
    result = run(tmp_path, *INT8)
    out = capsys.readouterr().out
    test = result.final.test
    assert 0.0 <= test["int8_acc"] <= 1.0 and test["int8_agreement"] >= 0.95
    assert set(result.final.val) >= {"acc", "int8_acc", "int8_agreement"}
    onnx_path = tmp_path / "run" / "export" / "model_int8.onnx"
    assert result.int8 is not None and result.int8["onnx"] == "export/model_int8.onnx"
    assert not (tmp_path / "run" / "export" / "model.onnx").exists()  # no float file claimed
    inits = {i.name: i.data_type for i in onnx.load(str(onnx_path)).graph.initializer}
    weights = [n for n in inits if n.endswith(".weight_int8")]
    assert len(weights) == 5  # four convs and the classifier of the MNIST-1D TCN
    assert all(inits[n] == onnx.TensorProto.INT8 for n in weights)
    # flash: the int8 weights' bytes (one per weight) + the int32 biases' bytes
    n_weights = sum(_numel(onnx_path, n) for n in weights)
    biases = [n for n in inits if n.endswith(".bias_int32")]
    assert result.int8["flash"] == n_weights + 4 * sum(_numel(onnx_path, n) for n in biases)
    table = out[out.index("seed network"):]
    for row in ["test int8 acc (onnxruntime)", "int8 ONNX weights+biases B",
                "flash cost B (SPEC 9)"]:  # fmt: skip
        assert row in table
    assert pareto_main([str(tmp_path), "--metric", "int8_acc"]) == 0
    net = load_export(tmp_path / "run")  # model.pt: the QAT network, observers included
    assert isinstance(net, QATNetwork)
    assert_export_is_the_fine_tuned_network(tmp_path / "run")
    csv = (tmp_path / "pareto.csv").read_text()
    assert f"{test['int8_acc']}"[:5] in csv


def test_the_same_int8_run_again_reuses_the_qat_fine_tune(tmp_path, capsys):
    first = run(tmp_path, *INT8, name="a")
    capsys.readouterr()
    again = run(tmp_path, *INT8, name="b")
    assert "fine-tune: reused" in capsys.readouterr().out
    assert again.final == first.final and again.int8["flash"] == first.int8["flash"]


def _numel(path, name: str) -> int:
    init = next(i for i in onnx.load(str(path)).graph.initializer if i.name == name)
    count = 1
    for d in init.dims:
        count *= d
    return count


def test_a_float_run_and_older_files_have_no_int8_entry(tmp_path):
    result = run(tmp_path, "method=pit", "reference=false")
    data = json.loads((tmp_path / "run" / "results.json").read_text())
    assert "int8" not in data and result.int8 is None
    assert not any(k.startswith("int8") for k in result.final.test)


@pytest.mark.parametrize("value", ["int4", "fp16"])
def test_an_unsupported_quantize_lists_the_supported_values(tmp_path, capsys, value):
    code, err = _fails(tmp_path, capsys, f"quantize={value}")
    assert code == 2 and f"quantize={value!r} is not supported; supported: ['int8']" in err


def test_quantize_without_a_fine_tune_is_refused(tmp_path, capsys):
    code, err = _fails(tmp_path, capsys, "quantize=int8", "method.finetune_epochs=0")
    assert code == 2 and "needs method.finetune_epochs >= 1" in err


def test_a_cascade_with_int8_runs_in_one_command(tmp_path, capsys):
    main(["data.datamodule.num_samples=300", "method.warmup_epochs=1", "method.search_epochs=1",
          "method.supernet_epochs=1", "method.intermediate_finetune_epochs=1",
          "method.finetune_epochs=1", "reference=false", "quantize=int8",
          f"hydra.run.dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}"])  # fmt: skip
    result = RunResult.load(tmp_path / "run" / "results.json")
    assert result.method == "cascade" and "int8_acc" in result.final.test
