"""A short PIT search on MNIST-1D that prints the seed network next to the one found.

Run ``python -m lightning_dnas.quickstart`` (``--help`` for the options). The pipeline follows
the recipe of SPEC section 6:

1. **warmup**: train the seed :class:`~lightning_dnas.zoo.mnist1d.Mnist1dTCN` (weights only);
2. **search**: wrap it with :class:`~lightning_dnas.PIT` and train weights and masks on
   ``task loss + lambda * cost`` with two Adam optimizers (learning rate 1e-3; weight decay
   1e-4 for the weights, none for the masks), keeping the epoch with the lowest validation
   ``task loss + lambda * hard cost``;
3. **export** the found network and **fine-tune** it with a fresh optimizer;
4. **baseline**: a copy of the warmed-up seed (with its optimizer state) trained for the
   search and fine-tune epochs too, so that the seed and the found network are both trained
   for ``warmup + search + fine-tune`` epochs.

Fine-tune and baseline anneal the learning rate along a cosine and keep the epoch with the
best validation accuracy; the test set is used only for the final table. The data are
MNIST-1D generated locally (dataset seed 42; ``--seed`` seeds weights and batch order).
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_dnas import PIT
from lightning_dnas.data.mnist1d import mnist1d_tensors, validation_split
from lightning_dnas.zoo.mnist1d import Mnist1dTCN

COSTS = {"params": "params", "macs": "macs"}
DEFAULT_STRENGTH = {"params": 3e-5, "macs": 7.5e-7}
LR = 1e-3
WEIGHT_DECAY = 1e-4


@dataclass(frozen=True)
class Split:
    """Signals ``x`` (``[N, 1, 40]``) and labels ``y`` of one data split."""

    x: Tensor
    y: Tensor


@dataclass(frozen=True)
class NetworkSummary:
    """Costs and accuracy of one trained network."""

    params: float
    macs: float
    total_params: int
    test_accuracy: float
    layers: dict[str, str]


@dataclass(frozen=True)
class QuickstartResult:
    """What :func:`main` measured: the seed baseline and the found network (its summary,
    the fine-tuned module and its architecture, ``PIT.arch()``), and the run time."""

    seed: NetworkSummary
    found: NetworkSummary
    found_network: nn.Module
    arch: dict
    seconds: float


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the quickstart."""
    parser = argparse.ArgumentParser(
        prog="python -m lightning_dnas.quickstart",
        description="PIT search of a temporal CNN on MNIST-1D: warmup, search, export, "
        "fine-tune, and a plain seed trained as long for comparison.",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=4000,
        help="MNIST-1D samples generated (80%% train, 20%% test; 10%% of the "
        "training samples are held out for validation)",
    )
    parser.add_argument(
        "--warmup-epochs",
        type=int,
        default=10,
        help="epochs training the seed's weights before the search",
    )
    parser.add_argument(
        "--search-epochs",
        type=int,
        default=20,
        help="epochs training weights and PIT masks together",
    )
    parser.add_argument(
        "--finetune-epochs", type=int, default=20, help="epochs fine-tuning the exported network"
    )
    parser.add_argument(
        "--strength",
        type=float,
        default=None,
        help="regularisation strength lambda (default: "
        + ", ".join(f"{v:g} for {k}" for k, v in DEFAULT_STRENGTH.items())
        + ")",
    )
    parser.add_argument(
        "--cost", choices=sorted(COSTS), default="params", help="cost the search minimises"
    )
    parser.add_argument("--seed", type=int, default=0, help="torch seed (weights, batches)")
    parser.add_argument("--batch-size", type=int, default=32, help="training minibatch size")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.strength is None:
        args.strength = DEFAULT_STRENGTH[args.cost]
    for name in ("warmup_epochs", "search_epochs", "finetune_epochs"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    return args


def batches(data: Split, batch_size: int, generator: torch.Generator) -> Iterator[Split]:
    """Shuffled minibatches of ``data`` (the last one may be smaller)."""
    order = torch.randperm(len(data.y), generator=generator)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield Split(data.x[idx], data.y[idx])


def evaluate(model: nn.Module, data: Split) -> tuple[float, float]:
    """Cross-entropy and accuracy of ``model`` on ``data`` in eval mode (the training mode
    is restored afterwards)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(data.x)
    model.train(was_training)
    loss = float(F.cross_entropy(logits, data.y))
    return loss, float((logits.argmax(1) == data.y).float().mean())


def train_epoch(
    model: nn.Module,
    data: Split,
    optimizers: Sequence[torch.optim.Optimizer],
    batch_size: int,
    generator: torch.Generator,
    penalty: Callable[[], Tensor] | None = None,
) -> float:
    """One epoch of ``cross-entropy (+ penalty())``; returns the mean training loss."""
    model.train()
    total, count = 0.0, 0
    for batch in batches(data, batch_size, generator):
        loss = F.cross_entropy(model(batch.x), batch.y)
        if penalty is not None:
            loss = loss + penalty()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()
        total += loss.item() * len(batch.y)
        count += len(batch.y)
    return total / max(count, 1)


def fit(
    stage: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    train: Split,
    val: Split,
    batch_size: int,
    generator: torch.Generator,
) -> None:
    """Train ``model`` for ``epochs`` epochs with the learning rate annealed to 0 along a
    cosine, printing one line per epoch, and load the weights of the epoch with the best
    validation accuracy (the last one on ties)."""
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    best_acc, best_state = -1.0, None
    for epoch in range(1, epochs + 1):
        loss = train_epoch(model, train, [optimizer], batch_size, generator)
        schedule.step()
        _, acc = evaluate(model, val)
        print(f"[{stage:8s}] epoch {epoch:3d}/{epochs}  loss {loss:.4f}  val acc {acc:6.2%}")
        if acc >= best_acc:
            best_acc, best_state = acc, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)


def run_search(
    search: PIT,
    args: argparse.Namespace,
    train: Split,
    val: Split,
    generator: torch.Generator,
) -> None:
    """Joint search of weights and masks; loads the state of the epoch with the lowest
    validation ``cross-entropy + lambda * hard cost`` (the cost of what export gives)."""
    weights = torch.optim.Adam(search.net_parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    masks = torch.optim.Adam(search.nas_parameters(), lr=LR, weight_decay=0.0)
    strength = {args.cost: args.strength}
    best_score, best_state = float("inf"), None
    for epoch in range(1, args.search_epochs + 1):
        loss = train_epoch(
            search,
            train,
            [weights, masks],
            args.batch_size,
            generator,
            penalty=lambda: search.regularizer(strength),
        )
        val_loss, acc = evaluate(search, val)
        soft, hard = float(search.soft_cost(args.cost).detach()), search.hard_cost(args.cost)
        score = val_loss + args.strength * hard
        print(
            f"[search  ] epoch {epoch:3d}/{args.search_epochs}  loss {loss:.4f}  "
            f"val acc {acc:6.2%}  {args.cost} soft {soft:,.0f} hard {hard:,.0f}"
        )
        if score <= best_score:
            best_score, best_state = score, copy.deepcopy(search.state_dict())
    if best_state is not None:
        search.load_state_dict(best_state)


def _layer(module: nn.Module) -> str:
    if isinstance(module, nn.Sequential):  # an exported conv with asymmetric padding
        module = module[-1]
    if isinstance(module, nn.Linear):
        return f"{module.in_features}->{module.out_features}"
    return (
        f"{module.in_channels}->{module.out_channels} k{module.kernel_size[0]}"
        f" d{module.dilation[0]}"
    )


def layer_table(model: nn.Module, names: Sequence[str]) -> dict[str, str]:
    """``{layer name: "cin->cout k<kernel> d<dilation>"}`` (``"in->out"`` for a Linear)."""
    return {name: _layer(model.get_submodule(name)) for name in names}


def hard_costs(search: PIT) -> dict[str, float]:
    """``{cost name: hard cost}`` of the search's current architecture: the exact counts of
    the network ``search.export()`` gives (of the seed itself before any training)."""
    return {name: search.hard_cost(name) for name in COSTS}


def summarize(
    model: nn.Module, costs: dict[str, float], test: Split, names: Sequence[str]
) -> NetworkSummary:
    """Costs (from :func:`hard_costs`), parameter count including BatchNorm, test accuracy
    and layer shapes of ``model``."""
    return NetworkSummary(
        params=costs["params"],
        macs=costs["macs"],
        total_params=sum(p.numel() for p in model.parameters()),
        test_accuracy=evaluate(model, test)[1],
        layers=layer_table(model, names),
    )


def format_table(seed: NetworkSummary, found: NetworkSummary) -> str:
    """The seed-vs-found table printed at the end of :func:`main`."""
    rows = [
        ("params (conv+linear)", f"{seed.params:,.0f}", f"{found.params:,.0f}"),
        ("params (all, incl. BN)", f"{seed.total_params:,}", f"{found.total_params:,}"),
        ("MACs per sample", f"{seed.macs:,.0f}", f"{found.macs:,.0f}"),
        ("test accuracy", f"{seed.test_accuracy:.2%}", f"{found.test_accuracy:.2%}"),
    ]
    rows += [(f"  {name}", seed.layers[name], found.layers[name]) for name in seed.layers]
    width = max(len(r[0]) for r in rows)
    col = max(len(r[1]) for r in [*rows, ("", "seed", "")])
    lines = [f"{'':{width}}  {'seed':>{col}}  found", "-" * (width + col + 24)]
    lines += [f"{name:{width}}  {a:>{col}}  {b}" for name, a, b in rows[:4]]
    lines.append("layers (in->out channels, kernel, dilation)")
    lines += [f"{name:{width}}  {a:>{col}}  {b}" for name, a, b in rows[4:]]
    ratio = found.params / seed.params if seed.params else float("nan")
    lines.append(f"found/seed params: {ratio:.1%}, MACs: {found.macs / seed.macs:.1%}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> QuickstartResult:
    """Run the quickstart (see the module docstring) and print the seed-vs-found table.

    ``argv``: command-line arguments (default ``sys.argv[1:]``). Seeds torch's global
    generator with ``--seed``; torch's thread count is set to ``--threads`` for the run and
    restored afterwards.
    """
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)


def run(args: argparse.Namespace) -> QuickstartResult:
    """The pipeline of the module docstring for parsed options (see :func:`parse_args`)."""
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    x_train, y_train, x_test, y_test = mnist1d_tensors(num_samples=args.samples)
    x_train, y_train, x_val, y_val = validation_split(x_train, y_train)
    train, val, test = Split(x_train, y_train), Split(x_val, y_val), Split(x_test, y_test)
    print(
        f"MNIST-1D: {len(train.y)} train, {len(val.y)} validation, {len(test.y)} test; "
        f"PIT cost {args.cost}, lambda {args.strength:g}"
    )

    seed = Mnist1dTCN()
    names = [n for n, m in seed.named_modules() if isinstance(m, (nn.Conv1d, nn.Linear))]
    optimizer = torch.optim.Adam(seed.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    for epoch in range(1, args.warmup_epochs + 1):
        loss = train_epoch(seed, train, [optimizer], args.batch_size, generator)
        print(
            f"[warmup  ] epoch {epoch:3d}/{args.warmup_epochs}  loss {loss:.4f}  "
            f"val acc {evaluate(seed, val)[1]:6.2%}"
        )
    baseline = copy.deepcopy(seed)
    baseline_opt = torch.optim.Adam(baseline.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    baseline_opt.load_state_dict(optimizer.state_dict())

    search = PIT(seed, example_input=train.x[:2], cost=COSTS)
    seed_costs = hard_costs(search)
    run_search(search, args, train, val, generator)
    found_costs = hard_costs(search)
    found = search.export()
    arch = search.arch()
    fit(
        "finetune",
        found,
        torch.optim.Adam(found.parameters(), lr=LR, weight_decay=WEIGHT_DECAY),
        args.finetune_epochs,
        train,
        val,
        args.batch_size,
        generator,
    )
    fit(
        "baseline",
        baseline,
        baseline_opt,
        args.search_epochs + args.finetune_epochs,
        train,
        val,
        args.batch_size,
        generator,
    )

    result = QuickstartResult(
        seed=summarize(baseline, seed_costs, test, names),
        found=summarize(found, found_costs, test, names),
        found_network=found,
        arch=arch,
        seconds=time.perf_counter() - start,
    )
    print()
    print(
        f"Seed vs found network ({args.warmup_epochs}+{args.search_epochs}+"
        f"{args.finetune_epochs} epochs each, test set of {len(test.y)}):"
    )
    print(format_table(result.seed, result.found))
    print(f"total time {result.seconds:.1f} s")
    return result


if __name__ == "__main__":
    main()
