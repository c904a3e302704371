"""What an export writes: the architecture JSON, the network in a form torch's default
``weights_only=True`` load reads (rebuilt by ``load_network``), its ONNX file, and at the
end of the fit the final, fine-tuned network."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from lightning_dnas import DNASCallback, Stage, load_network

from .modules import Classifier, TinyTCN, loaders


def _outputs(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    net.eval()
    with torch.no_grad():
        return net(x)


def test_export_files_load_with_weights_only_and_the_final_one_is_fine_tuned(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    L.seed_everything(0)
    train, val = loaders()
    model = Classifier(TinyTCN())
    dnas = DNASCallback(stages=[Stage("search", 2, "pit"), Stage("finetune", 2)],
                        arch_lr=0.1, strength=0.05, export_dir=tmp_path)  # fmt: skip
    L.Trainer(callbacks=[dnas], logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False,
              num_sanity_val_steps=0).fit(model, train, val)  # fmt: skip
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["0-search-pit.json", "0-search-pit.onnx", "0-search-pit.pt",
                     "final.onnx", "final.pt"]
    assert json.loads((tmp_path / "0-search-pit.json").read_text()) == json.loads(
        json.dumps(dnas.history[0]))
    torch.load(tmp_path / "final.pt")  # torch's default: weights_only=True
    x = torch.randn(5, 1, 16)
    final = load_network(TinyTCN(), tmp_path / "final.pt")
    torch.testing.assert_close(_outputs(final, x), _outputs(dnas.exported, x))
    searched = load_network(TinyTCN(), tmp_path / "0-search-pit.pt")
    assert not torch.allclose(_outputs(searched, x), _outputs(final, x)), \
        "final.pt holds the fine-tuned weights, <stage>.pt those of the export"
    session = ort.InferenceSession(str(tmp_path / "final.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), _outputs(dnas.exported, x),
                               atol=1e-4, rtol=1e-4)  # fmt: skip
