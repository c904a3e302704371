"""The notebooks run top to bottom (nbclient, a small configuration injected in place of
each one's ``parameters`` cell) and show what they promise; committed notebooks carry no
outputs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"

# Small configurations: the same names as each notebook's parameters cell, tiny sizes.
SMALL = {
    "01_quickstart.ipynb": """
NUM_SAMPLES = 300
BATCH_SIZE = 64
CHANNELS = 8
WARMUP_EPOCHS = 1
SEARCH_EPOCHS = 1
FINETUNE_EPOCHS = 1
STRENGTH = 3e-4
ARCH_LR = 1e-2
SEED = 0
import tempfile
ONNX_PATH = tempfile.mkdtemp() + "/found.onnx"
QAT_EPOCHS = 1
INT8_PATH = tempfile.mkdtemp() + "/found_int8.onnx"
""",
    "02_supernet_cascade.ipynb": """
NUM_SAMPLES = 300
BATCH_SIZE = 64
CHANNELS = 8
SUPERNET_EPOCHS = 2
INTERMEDIATE_FINETUNE_EPOCHS = 1
PIT_EPOCHS = 1
FINETUNE_EPOCHS = 1
SUPERNET_STRENGTH = 3e-4
PIT_STRENGTH = 3e-4
ARCH_LR = 1e-2
SEED = 0
""",
    "03_pareto.ipynb": """
NUM_SAMPLES = 300
BATCH_SIZE = 64
CHANNELS = 8
LAMBDAS = [1e-5, 1e-3]
SEARCH_EPOCHS = 1
FINETUNE_EPOCHS = 1
ARCH_LR = 1e-2
SEED = 0
""",
}


def _parameters_cell(nb: Any) -> Any:
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "a notebook needs exactly one cell tagged `parameters`"
    return tagged[0]


def _names(source: str) -> set[str]:
    return {line.split("=")[0].strip() for line in source.splitlines() if "=" in line}


def _run(name: str, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Execute notebook ``name`` with its small parameters; returns the code cells' outputs
    (flattened)."""
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    cell = _parameters_cell(nb)
    # The injected cell must set exactly the notebook's parameters, or a renamed parameter
    # would leave the full-size value in place and make this test slow instead of failing.
    assert _names(SMALL[name]) == _names(cell.source)
    cell.source = SMALL[name]
    # The kernel is a child process: it imports this checkout's package and, next to the
    # other xdist worker, uses one thread (the notebooks ask for two at full size).
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})  # fmt: skip
    client.execute()
    return [out for c in nb.cells if c.cell_type == "code" for out in c.outputs]


def _markdown(outputs: list[dict[str, Any]]) -> str:
    return "\n".join(o["data"]["text/markdown"] for o in outputs
                     if "text/markdown" in o.get("data", {}))  # fmt: skip


def _text(outputs: list[dict[str, Any]]) -> str:
    return "".join(o.get("text", "") for o in outputs)


def _images(outputs: list[dict[str, Any]]) -> int:
    return sum("image/png" in o.get("data", {}) for o in outputs)


def test_quickstart_shows_the_found_network_and_the_before_after_table(monkeypatch):
    outputs = _run("01_quickstart.ipynb", monkeypatch)
    table = _markdown(outputs)
    assert "| | seed (before) | found (after) |" in table
    for row in ("| params |", "| macs |", "| test accuracy |", "| `blocks.0.conv` |",
                "| `classifier` |"):  # fmt: skip
        assert row in table
    assert "Mnist1dTCN(" in _text(outputs)  # the printed found network
    assert "found.onnx: onnxruntime matches PyTorch to" in _text(outputs)
    assert "found_int8.onnx: int8 test accuracy" in _text(outputs)


def test_supernet_cascade_plots_theta_and_lists_each_export(monkeypatch):
    outputs = _run("02_supernet_cascade.ipynb", monkeypatch)
    table = _markdown(outputs)
    assert "| 0-search-supernet | supernet |" in table and "| 2-search-pit | pit |" in table
    assert "blocks.0:" in table and "Test accuracy" in table
    assert _images(outputs) == 1  # the theta / temperature figure


def test_pareto_runs_a_sweep_and_draws_the_front(monkeypatch):
    outputs = _run("03_pareto.ipynb", monkeypatch)
    assert _images(outputs) == 1  # pareto.png
    report = _markdown(outputs)
    assert "# Pareto front: acc (test) vs params" in report
    # One architecture row (seed 0) per lambda.
    assert "| pit | pit.params=1e-05 | 0 |" in report and "| pit | pit.params=0.001 | 0 |" in report
    assert "lambda 1e-05: params" in _text(outputs)


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_have_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name}: strip outputs before committing (e.g. jupyter nbconvert "
                "--clear-output --inplace)")  # fmt: skip
    _parameters_cell(nb)


def test_every_notebook_has_a_small_configuration():
    assert sorted(SMALL) == sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
