"""A default application run is free of log noise: Lightning's "`weights_only` was not
set" line (the application's own checkpoint saves pass ``weights_only`` explicitly) and the
ONNX exporter's INFO lines."""

from __future__ import annotations

import logging

import pytest

from lightning_dnas.app.train import main


def test_a_run_does_not_log_weights_only_not_set(tmp_path, capfd, caplog):
    caplog.set_level(logging.INFO)
    main(["data.datamodule.num_samples=300", "method=pit", "method.warmup_epochs=1",
          "method.search_epochs=1", "method.finetune_epochs=1", "onnx=false",
          f"hydra.run.dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}"])  # fmt: skip
    out, err = capfd.readouterr()
    assert "Trainer.fit" in out + err + caplog.text  # Lightning's own lines were captured
    assert "`weights_only` was not set" not in out + err + caplog.text


def test_the_onnx_export_logs_no_info_lines(tmp_path, capfd, caplog):
    """The exporter's INFO lines (onnxscript's optimizer, onnx_ir's passes) stay out of a run
    whose logging is configured at INFO, as Hydra configures it."""
    pytest.importorskip("onnxscript")
    caplog.set_level(logging.INFO)
    main(["data.datamodule.num_samples=300", "method=pit", "method.warmup_epochs=1",
          "method.search_epochs=1", "method.finetune_epochs=1", "onnx=true",
          f"hydra.run.dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}"])  # fmt: skip
    out, err = capfd.readouterr()
    assert (tmp_path / "run" / "export" / "model.onnx").is_file()
    text = out + err + caplog.text
    assert "onnx_ir" not in text and "unused_removal" not in text, text[-2000:]
