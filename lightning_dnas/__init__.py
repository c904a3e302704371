"""lightning_dnas: differentiable neural architecture search (PIT, SuperNet) for TinyML.

In a Lightning fit (docs/CALLBACK.md)::

    dnas = DNASCallback("pit", cost="params", strength=1e-6, warmup_epochs=5,
                        search_epochs=20, finetune_epochs=10)   # or stages=cascade_stages(...)
    Trainer(callbacks=[dnas]).fit(module, data); dnas.exported  # the found network
    restore(module_or_seed_network, "any.ckpt")                 # any checkpoint of such a fit
    load_network(SeedNet(), "<log_dir>/dnas/final.pt")          # an export file, weights_only

Engine (pure PyTorch)::

    search = PIT(model, example_input=x, cost="params")      # convert
    loss = task_loss(search(x), y) + search.regularizer(1e-6)  # lambda * soft cost
    net = search.export()                                      # plain nn.Module
    export_onnx(net, x, "net.onnx")                            # + onnxruntime check
    qat = prepare_qat(net, x); export_int8_onnx(qat, x, "q.onnx")  # QAT, int8 QDQ ONNX
    spec = search.arch(); net = apply_arch(fresh_model, spec)  # rebuild the structure

    SuperNetModule([...candidates])   # place a choice in any network
    search = SuperNet(model, example_input=x, cost="macs", softmax="hard_gumbel")
"""

from typing import TYPE_CHECKING, Any

from .nas.cost.memory import memory_report
from .nas.cost.models import CostModel, LayerShape
from .nas.graph.trace import UnsupportedModelError
from .nas.methods import PIT, PITSuperNet, SuperNet
from .nas.spec import apply_arch
from .nas.supernet import SuperNetModule, set_softmax, set_temperature, temperature_schedule
from .onnx_export import OnnxExportError, export_onnx
from .quantize import QuantizationError, export_int8_onnx, prepare_qat
from .restore import load_network, restore
from .stages import Stage, cascade_stages, default_stages

__all__ = [
    "PIT",
    "CostModel",
    "DNASCallback",
    "LayerShape",
    "OnnxExportError",
    "PITSuperNet",
    "QuantizationError",
    "Stage",
    "SuperNet",
    "SuperNetModule",
    "UnsupportedModelError",
    "apply_arch",
    "cascade_stages",
    "default_stages",
    "export_int8_onnx",
    "export_onnx",
    "load_network",
    "memory_report",
    "prepare_qat",
    "restore",
    "set_softmax",
    "set_temperature",
    "temperature_schedule",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .callback import DNASCallback


def __getattr__(name: str) -> Any:
    """``DNASCallback`` on first use (PEP 562): the engine does not need Lightning, whose
    import takes seconds, so ``import lightning_dnas`` leaves it out until then."""
    if name == "DNASCallback":
        from .callback import DNASCallback

        return DNASCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "DNASCallback"])
