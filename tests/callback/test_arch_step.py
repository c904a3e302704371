"""The callback's default architecture optimizer: torch's Adam without weight decay, fused
where torch has a fused Adam for the parameters' device and dtype."""

import torch

from lightning_dnas.callback.arch_step import default_arch_optimizer


def _params(device: str = "cpu") -> list[torch.nn.Parameter]:
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.rand(n, device=device)) for n in (8, 16, 3)]


def test_the_default_is_fused_on_cpu_and_steps_as_torchs_adam():
    ours, theirs = _params(), _params()
    opt = default_arch_optimizer(0.01)([{"params": ours, "name": "channels"}])
    ref = torch.optim.Adam(theirs, lr=0.01, weight_decay=0.0, foreach=False)
    assert opt.param_groups[0]["fused"] is True
    assert opt.param_groups[0]["weight_decay"] == 0.0
    assert opt.param_groups[0]["name"] == "channels"
    for step in range(5):
        torch.manual_seed(step)
        grads = [torch.randn_like(p) for p in ours]
        for p, q, g in zip(ours, theirs, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_a_device_without_a_fused_adam_gets_the_default_implementation():
    opt = default_arch_optimizer(0.01)([{"params": _params("meta")}])
    assert not opt.param_groups[0]["fused"]
