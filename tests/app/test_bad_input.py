"""Bad input stops the application with a clear message, a non-zero exit status and no
results.json."""

from __future__ import annotations

import pytest

from lightning_dnas.app.train import main


def _fails(tmp_path, capsys, *overrides: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main([f"hydra.run.dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}",
              "data.datamodule.num_samples=100", *overrides])  # fmt: skip
    assert not list(tmp_path.rglob("results.json"))
    return info.value.code, capsys.readouterr().err


def test_unknown_config_group_option(tmp_path, capsys):
    code, err = _fails(tmp_path, capsys, "method=darts")
    assert code != 0 and "Could not find 'method/darts'" in err and "pit" in err


def test_a_lambda_that_is_not_a_number(tmp_path, capsys):
    code, err = _fails(tmp_path, capsys, "method.strength=small")
    assert code == 2 and "method.strength must be a number, got 'small'" in err


def test_a_supernet_method_on_a_model_without_a_supernet(tmp_path, capsys):
    code, err = _fails(tmp_path, capsys, "model=autoencoder", "method=supernet")
    assert code == 2 and "has no SuperNet variant" in err


def test_an_unwritable_output_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SystemExit) as info:
        main([f"hydra.run.dir={blocker / 'run'}", "data.datamodule.num_samples=100"])
    assert info.value.code != 0
    assert str(blocker) in capsys.readouterr().err
    assert blocker.read_text() == "not a directory"
