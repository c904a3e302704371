"""Test support: independent hook-based counts, mask randomisation, comparisons."""

import math

import torch
from torch import nn


def run(model: nn.Module, x) -> list[torch.Tensor]:
    """``model(x)`` (``model(*x)`` for a tuple of inputs) with its tensor outputs as a list
    (a tensor, a tuple/namedtuple or a dict of tensors)."""
    out = model(*x) if isinstance(x, tuple) else model(x)
    if isinstance(out, torch.Tensor):
        return [out]
    return list(out.values()) if isinstance(out, dict) else list(out)


def conv_linear_costs(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """Params (each module once) and per-sample MACs (every call) of all convs and linears."""
    params: dict[nn.Module, int] = {}
    macs = 0

    def hook(module: nn.Module, _inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        count = module.weight.numel() + (0 if module.bias is None else module.bias.numel())
        params[module] = count
        spatial = out.shape[2:] if isinstance(module, nn.modules.conv._ConvNd) else out.shape[1:-1]
        macs += count * math.prod(spatial)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.modules.conv._ConvNd | nn.Linear)
    ]
    with torch.no_grad():
        run(model, x)
    for handle in handles:
        handle.remove()
    return sum(params.values()), macs


def randomize_masks(search: nn.Module, seed: int = 0, low: float = 0.0, high: float = 1.0) -> None:
    """Set every architecture parameter uniformly in [low, high): about half prune."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in search.nas_parameters():
            p.copy_(torch.rand(p.shape, generator=gen) * (high - low) + low)


def randomize_norms(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial affine parameters and running statistics, and every
    other norm (instance/group/layer) and PReLU non-trivial parameters."""
    gen = torch.Generator().manual_seed(seed)
    others = (nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.LayerNorm, nn.PReLU)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.3)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            elif isinstance(m, others):
                for p in m.parameters(recurse=False):
                    p.copy_(torch.rand(p.shape, generator=gen) + 0.25)


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| divided by max(1, max |a|)."""
    return float((a - b).abs().max()) / max(1.0, float(a.abs().max()))


def assert_export_matches(search: nn.Module, x: torch.Tensor, tol: float = 1e-5) -> nn.Module:
    """Export ``search`` (costs named "params" and "macs") and check, in eval mode, that the
    exported network computes the search network's function (max relative difference
    <= ``tol``) and that its own hook-counted params/MACs equal ``hard_cost``."""
    exported = search.export(check=False)
    search.eval(), exported.eval()
    with torch.no_grad():
        refs, outs = run(search, x), run(exported, x)
    assert len(refs) == len(outs)
    for ref, out in zip(refs, outs, strict=True):
        assert ref.shape == out.shape
        assert max_rel_diff(ref, out) <= tol
    params, macs = conv_linear_costs(exported, x)
    assert search.hard_cost("params") == params
    assert search.hard_cost("macs") == macs
    return exported


def assert_faithful(
    model: nn.Module, x, mask_seeds: range = range(3), **options
) -> nn.Module:
    """The PIT contract on one network: all masks on = the seed function; for random masks
    the exported network equals the masked one (eval) and its count equals hard_cost.
    ``x`` is an input or a tuple of inputs; ``options`` go to ``PIT``. Returns the search."""
    from lightning_dnas import PIT

    randomize_norms(model)
    search = PIT(model, x, cost={"params": "params", "macs": "macs"}, **options)
    model.eval(), search.eval()
    with torch.no_grad():
        for a, b in zip(run(search, x), run(model, x), strict=True):
            # Equal up to rounding: F.linear on a non-contiguous (channels-last) input rounds
            # differently (1 ulp) for a computed weight than for a Parameter.
            assert max_rel_diff(b, a) <= 1e-6
    for seed in mask_seeds:
        randomize_masks(search, seed)
        assert_export_matches(search, x)
    return search
