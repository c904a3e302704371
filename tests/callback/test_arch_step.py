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


def _count_device_counts(monkeypatch) -> list[int]:
    """Calls of ``torch.cuda.device_count`` from now on (the NVML probe), as Lightning's
    import leaves the environment (``PYTORCH_NVML_BASED_CUDA_CHECK=1``)."""
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    calls, real = [], torch.cuda.device_count
    monkeypatch.setattr(torch.cuda, "device_count", lambda: calls.append(1) or real())
    return calls


def test_a_cpu_step_skips_torchs_graph_capture_check(monkeypatch):
    # The method ArchAdam overrides must still be the one torch's Adam calls: a rename in
    # torch would leave the override unused (and the step slow) without this.
    assert hasattr(torch.optim.Optimizer, "_accelerator_graph_capture_health_check")
    ours, theirs = _params(), _params()
    opt = default_arch_optimizer(0.01)([{"params": ours}])
    ref = torch.optim.Adam(theirs, lr=0.01, fused=True)
    for p in (*ours, *theirs):
        p.grad = torch.ones_like(p)
    calls = _count_device_counts(monkeypatch)
    opt.step()
    assert calls == []
    ref.step()
    # The reference: torch's own Adam probes the devices in its step when torch has CUDA.
    assert len(calls) == (1 if torch.cuda._is_compiled() else 0)
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_parameters_off_the_cpu_keep_torchs_check(monkeypatch):
    opt = default_arch_optimizer(0.01)([{"params": _params("meta")}])
    checks = []
    monkeypatch.setattr(torch.optim.Optimizer, "_accelerator_graph_capture_health_check",
                        lambda self: checks.append(self))  # fmt: skip
    opt._accelerator_graph_capture_health_check()
    assert checks == [opt]
