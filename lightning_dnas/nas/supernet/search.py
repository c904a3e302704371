"""``SuperNet``: search only the choices placed by the user with :class:`SuperNetModule`."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ..arch import FORMAT, apply_arch
from ..cost.models import LayerShape, resolve_costs
from ..graph.trace import as_tuple
from ..search import SearchModel, check_export
from .module import SuperNetModule, icv_loss, set_softmax, set_temperature

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def full_shape(name: str, module: nn.Module, out: Tensor) -> LayerShape:
    """The :class:`LayerShape` of a whole (unsearched) Conv/Linear from one call's output."""
    if isinstance(module, nn.Linear):
        return LayerShape(name, module, "linear", module.in_features, module.out_features, 1, 1,
                          module.bias is not None, math.prod(out.shape[1:-1]))  # fmt: skip
    depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
    return LayerShape(
        name, module, "depthwise" if depthwise else "conv", module.in_channels,
        module.out_channels, math.prod(module.kernel_size), module.groups,
        module.bias is not None, math.prod(out.shape[2:]),
    )  # fmt: skip


class SuperNet(SearchModel):
    """Coarse-grained search among the candidates of every :class:`SuperNetModule` of
    ``model`` (SPEC section 5); the rest of the network is kept as it is.

    Cost: ``soft_cost = sum(outside layers) + sum_m sum_i p_mi * cost(candidate_mi)`` with
    ``p_m = softmax(alpha_m / T)`` (the expected cost; ``sampled_cost=True`` uses the
    ``theta`` of the last forward instead, as the thesis did); ``hard_cost`` counts the
    argmax candidates, which is what ``export()`` keeps.

    Args:
        model: a network containing SuperNetModules (deep-copied; the original is untouched).
        example_input: a tensor (or tuple) the network accepts; used to measure the output
            positions of every layer (MACs) and to check the exported network.
        cost: as for :class:`~lightning_dnas.PIT`.
        softmax: if given, sets the mode of every choice (``"softmax"``, ``"gumbel"``,
            ``"hard_softmax"``, ``"hard_gumbel"``); else each keeps its own.
        temperature: if given, sets the temperature of every choice.
        sampled_cost: use the last forward's theta in ``soft_cost`` and ``icv``.
    """

    def __init__(
        self,
        model: nn.Module,
        example_input: Any,
        cost: Any = "params",
        softmax: str | None = None,
        temperature: float | None = None,
        sampled_cost: bool = False,
    ) -> None:
        super().__init__()
        self.costs = resolve_costs(cost)
        self.net = copy.deepcopy(model)
        self.net.train(model.training)
        self.choices = dict(
            (n, m) for n, m in self.net.named_modules() if isinstance(m, SuperNetModule)
        )
        if not self.choices:
            raise ValueError(
                f"{type(model).__name__} has no SuperNetModule: place choices with "
                "lightning_dnas.SuperNetModule([...]) or use PIT for a plain network"
            )
        for name, choice in self.choices.items():
            nested = [n for n, m in choice.candidates.named_modules()
                      if n and isinstance(m, SuperNetModule)]  # fmt: skip
            if nested:
                raise ValueError(f"SuperNetModule `{name}` contains another choice "
                                 f"(`{name}.candidates.{nested[0]}`); nesting is not supported")
        if softmax is not None:
            set_softmax(self.net, softmax)
        if temperature is not None:
            set_temperature(self.net, temperature)
        self.sampled_cost = sampled_cost
        self._example = tuple(t.detach().clone() if isinstance(t, Tensor) else t
                              for t in as_tuple(example_input))  # fmt: skip
        self._outside, self._inside = self._measure_layers()
        self.train()

    # -- layer shapes ---------------------------------------------------------------------
    def _owner(self, name: str) -> tuple[str, int] | None:
        for choice_name, choice in self.choices.items():
            prefix = f"{choice_name}.candidates." if choice_name else "candidates."
            if name.startswith(prefix):
                return choice_name, choice.names.index(name[len(prefix):].split(".")[0])
        return None

    def _measure_layers(self) -> tuple[list[tuple[LayerShape, bool]], dict[Any, list]]:
        """Run the example once with every candidate active and record each Conv/Linear call.

        Returns the calls outside the choices and, per (choice, candidate), the calls inside,
        each as ``(shape, first_call)``: params count a layer's first call, MACs every call.
        """
        calls: list[tuple[str, nn.Module, LayerShape]] = []
        names = {m: n for n, m in self.net.named_modules()}

        def hook(module: nn.Module, _inputs: Any, out: Tensor) -> None:
            calls.append((names[module], module, full_shape(names[module], module, out)))

        handles = [m.register_forward_hook(hook) for m in names if isinstance(m, _LAYERS)]
        modes = {n: c.eval_mode for n, c in self.choices.items()}
        states = {m: m.training for m in self.net.modules()}
        try:
            for c in self.choices.values():
                c.eval_mode = "soft"  # every candidate runs once
            self.net.eval()
            with torch.no_grad():
                self.net(*self._example)
        finally:
            for h in handles:
                h.remove()
            for n, c in self.choices.items():
                c.eval_mode = modes[n]
            for m, training in states.items():
                m.training = training
        outside: list[tuple[LayerShape, bool]] = []
        inside: dict[tuple[str, int], list[tuple[LayerShape, bool]]] = {}
        seen: set[nn.Module] = set()
        for name, module, shape in calls:
            entry = (shape, module not in seen)
            seen.add(module)
            owner = self._owner(name)
            (outside if owner is None else inside.setdefault(owner, [])).append(entry)
        return outside, inside

    # -- API ------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the supernet (each choice mixes its candidates per its mode)."""
        return self.net(*args, **kwargs)

    def nas_parameters(self) -> Iterator[nn.Parameter]:
        """The architecture logits ``alpha`` of every choice."""
        for choice in self.choices.values():
            if choice.alpha.requires_grad:
                yield choice.alpha

    def net_parameters(self) -> Iterator[nn.Parameter]:
        """Every trainable weight except the architecture logits."""
        alphas = {id(c.alpha) for c in self.choices.values()}
        yield from (p for p in self.net.parameters() if p.requires_grad and id(p) not in alphas)

    def set_softmax(self, mode: str) -> None:
        """Set the combiner mode of every choice."""
        set_softmax(self.net, mode)

    def set_temperature(self, temperature: float) -> None:
        """Set the temperature of every choice (anneal with the schedules in ``.schedule``)."""
        set_temperature(self.net, temperature)

    def icv(self, eps: float = 1e-3) -> Tensor:
        """ICV polarisation loss ``sum_m mean(theta_m)^2 / (var(theta_m) + eps)``."""
        return icv_loss(self.net, eps=eps, sampled=self.sampled_cost)

    def _sum(self, entries: list[tuple[LayerShape, bool]], name: str) -> float:
        model = self.costs[name]
        return sum(float(model(s)) for s, first in entries if first or model.per_call)

    def _weights(self, choice: SuperNetModule) -> Tensor:
        if self.sampled_cost:
            if choice.last_theta is None:
                raise RuntimeError("sampled_cost=True needs a forward before the cost")
            return choice.last_theta
        return choice.probabilities()

    def soft_cost(self, name: str | None = None) -> Tensor:
        """Expected cost: the theta-weighted candidate costs plus every layer outside."""
        name = self._cost_name(name)
        total: Tensor | float = self._sum(self._outside, name)
        for cname, choice in self.choices.items():
            costs = torch.tensor([self._sum(self._inside.get((cname, i), []), name)
                                  for i in range(len(choice.names))],
                                 dtype=choice.alpha.dtype, device=choice.alpha.device)  # fmt: skip
            total = total + (self._weights(choice) * costs).sum()
        return torch.as_tensor(total)

    def hard_cost(self, name: str | None = None) -> float:
        """Cost of the argmax architecture (equals the exported network's)."""
        name = self._cost_name(name)
        total = self._sum(self._outside, name)
        for cname, choice in self.choices.items():
            total += self._sum(self._inside.get((cname, choice.argmax()), []), name)
        return float(total)

    def arch(self) -> dict[str, Any]:
        """The chosen candidate of every choice, by index and name."""
        chosen = {n: {"index": c.argmax(), "name": c.names[c.argmax()]}
                  for n, c in self.choices.items()}  # fmt: skip
        return {"format": FORMAT, "method": "supernet", "choices": chosen, "modules": {}}

    def export(self, check: bool = True) -> nn.Module:
        """A plain copy of the network with every choice replaced by its argmax candidate;
        with ``check``, verified against the search network in eval (argmax) mode."""
        modes = {n: c.eval_mode for n, c in self.choices.items()}
        exported = apply_arch(copy.deepcopy(self.net), self.arch())
        if check:
            for c in self.choices.values():
                c.eval_mode = "argmax"
            try:
                check_export(self, exported, self._example)
            finally:
                for n, c in self.choices.items():
                    c.eval_mode = modes[n]
        return exported
