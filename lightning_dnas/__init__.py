"""lightning_dnas: differentiable neural architecture search (PIT, SuperNet) for TinyML.

Engine (pure PyTorch)::

    search = PIT(model, example_input=x, cost="params")      # convert
    loss = task_loss(search(x), y) + search.regularizer(1e-6)  # lambda * soft cost
    net = search.export()                                      # plain nn.Module
    spec = search.arch(); apply_arch(fresh_model, spec)        # rebuild the structure
"""

from .nas.arch import apply_arch
from .nas.cost.models import CostModel, LayerShape
from .nas.graph.trace import UnsupportedModelError
from .nas.search import PIT

__all__ = ["PIT", "CostModel", "LayerShape", "UnsupportedModelError", "apply_arch"]
__version__ = "0.1.0"
