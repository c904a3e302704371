"""The quickstart pipeline end to end on a tiny configuration."""

import pytest
import torch
from torch import nn

from lightning_dnas.quickstart import main, parse_args

TINY = ["--samples", "600", "--warmup-epochs", "1", "--search-epochs", "1"]
TINY += ["--finetune-epochs", "1", "--batch-size", "64", "--threads", "1"]
LAYERS = ["blocks.0.conv", "blocks.1.conv", "blocks.2.conv", "blocks.3.conv", "classifier"]


def conv_linear_params(model: nn.Module) -> int:
    """Weights and biases of every Conv1d and Linear of ``model``."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Linear))]
    return sum(p.numel() for m in layers for p in m.parameters())


@pytest.mark.parametrize("cost", ["params", "macs"])
def test_tiny_run_prints_the_table(cost: str, capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    result = main([*TINY, "--cost", cost])
    out = capsys.readouterr().out
    assert torch.get_num_threads() == threads
    assert "[warmup  ] epoch   1/1" in out and "[finetune] epoch   1/1" in out
    assert "[search  ] epoch   1/1" in out and f"{cost} soft" in out
    table = out[out.index("Seed vs found network") :]
    for row in ["params (conv+linear)", "params (all, incl. BN)", "MACs per sample"]:
        assert row in table
    assert "test accuracy" in table
    section = table.split("layers (in->out channels, kernel, dilation)\n")[1]
    rows = {line.split()[0]: line.split()[1:] for line in section.splitlines()[: len(LAYERS)]}
    assert list(rows) == LAYERS
    assert rows["blocks.1.conv"][:3] == ["32->32", "k9", "d1"]  # the seed's columns
    assert rows["classifier"][0] == "32->10"
    assert result.seed.params == 28_266 and result.seed.macs == 1_117_770
    assert result.found.params <= result.seed.params
    assert result.found.macs <= result.seed.macs
    assert conv_linear_params(result.found_network) == result.found.params
    assert 0.0 <= result.found.test_accuracy <= 1.0
    assert result.arch["method"] == "pit"


def test_default_options() -> None:
    args = parse_args([])
    assert (args.samples, args.threads, args.cost) == (4000, 2, "params")
    assert args.strength == 3e-5
    assert parse_args(["--cost", "macs"]).strength == 7.5e-7
    with pytest.raises(SystemExit):
        parse_args(["--search-epochs", "-1"])
