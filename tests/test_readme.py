"""The README's callback example runs as printed (only its epoch counts shortened, so the
test takes seconds), and what it shows holds: the exported network is a plain module,
``final.pt`` rebuilds it, ``restore`` loads the fit's checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

README = Path(__file__).resolve().parents[1] / "README.md"


def callback_example() -> str:
    """The README's ```python block that fits with the DNASCallback."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    [code] = [b for b in blocks if "trainer.fit(" in b and "DNASCallback(" in b]
    return code


def test_the_readme_callback_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    code = callback_example()
    printed = "warmup_epochs=1,\n                    search_epochs=8, finetune_epochs=2"
    assert printed in code  # the README changed: update the shortening below
    code = code.replace(printed, "warmup_epochs=1, search_epochs=1, finetune_epochs=1")
    monkeypatch.chdir(tmp_path)  # Lightning writes lightning_logs/ in the working dir
    torch.manual_seed(0)
    scope: dict[str, object] = {"__name__": "readme"}
    exec(compile(code, str(README), "exec"), scope)  # the README's own code
    found, same, module = scope["found"], scope["same"], scope["module"]
    assert isinstance(found, nn.Sequential) and not any(
        "mask" in n for n, _ in found.named_parameters())  # fmt: skip
    x = torch.randn(4, 1, 32)
    found.eval(), same.eval()
    with torch.no_grad():
        assert torch.equal(found(x), same(x))  # final.pt is the fine-tuned network
    ckpt = torch.load(scope["trainer"].checkpoint_callback.best_model_path, weights_only=False)
    want = {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    got = module.net.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], v) for k, v in want.items())
