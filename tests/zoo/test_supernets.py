"""SuperNet variants of the MLPerf Tiny seed models and the SPEC section 5 reference choice."""

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import torch
from torch import fx, nn

from lightning_dnas.nas.supernet import SuperNetModule, supernet_modules
from lightning_dnas.zoo import MobileNetV1, ResNet8
from lightning_dnas.zoo.supernet_blocks import (
    CANDIDATE_NAMES,
    ConvBNAct,
    spec_reference_choice,
    standard_choice,
)
from lightning_dnas.zoo.supernets import DSCNNSuperNet, MobileNetV1SuperNet, ResNet8SuperNet

C3, C5, DW, ID = CANDIDATE_NAMES  # "conv3x3", "conv5x5", "dw_sep", "identity"


# ---------------------------------------------------------------- hand-computed counts


def conv(c_in: int, c_out: int, k: int, bias: bool, groups: int = 1) -> int:
    """Parameters of a k x k conv: c_out * (c_in / groups * k * k + bias)."""
    return c_out * (c_in // groups * k * k + int(bias))


def bn(c: int) -> int:
    """BatchNorm2d: weight + bias (running statistics are buffers)."""
    return 2 * c


def candidate_params(c_in: int, c_out: int, bias: bool, identity: bool) -> list[int]:
    """[conv3x3, conv5x5, dw_sep(, identity)], each conv with its own BN."""
    counts = [
        conv(c_in, c_out, 3, bias) + bn(c_out),
        conv(c_in, c_out, 5, bias) + bn(c_out),
        conv(c_in, c_in, 3, bias, groups=c_in) + bn(c_in) + conv(c_in, c_out, 1, bias) + bn(c_out),
    ]
    return [*counts, 0] if identity else counts


@dataclass(frozen=True)
class Case:
    factory: Callable[[], nn.Module]
    input_shape: tuple[int, ...]  # per sample
    num_classes: int
    # (qualified name, c_in, c_out, has identity) of each SuperNetModule, in model order
    choices: tuple[tuple[str, int, int, bool], ...]
    bias: bool  # conv candidates with bias
    outside: int  # weights (BN included) outside the choices, hand-computed
    total: int  # every parameter: weights + one architecture logit per candidate


# ResNet-8: every conv except the two 1x1 shortcut convs, i.e. the stem + 2 per stack
# x 3 stacks = 7 choices. Identity only in each stack's second conv (16->16, 32->32,
# 64->64, stride 1); the first conv of stack 1 is 16->16 stride 1 too, but the thesis'
# code lists no identity there. Outside the choices: shortcut convs 1x1 with bias
# 16->32 (544) and 32->64 (2,112), their BN (64 + 128), Linear 64->10 (650).
RESNET8_CHOICES = (
    ("stem", 3, 16, False),
    ("stack1.conv1", 16, 16, False),
    ("stack1.conv2", 16, 16, True),
    ("stack2.conv1", 16, 32, False),
    ("stack2.conv2", 32, 32, True),
    ("stack3.conv1", 32, 64, False),
    ("stack3.conv2", 64, 64, True),
)
RESNET8_OUTSIDE = conv(16, 32, 1, True) + conv(32, 64, 1, True) + bn(32) + bn(64) + 64 * 10 + 10
# choices: stem 1,860 + stack1 9,296 + 9,296 + stack2 18,400 + 36,512
# + stack3 72,640 + 144,704 = 292,708; + outside 3,498 = 296,206 weights; + 24 logits.
RESNET8_TOTAL = 296_230

# DS-CNN (thesis fig. 5.2): the depthwise+pointwise of each of the 4 blocks, all 64->64
# stride 1, so 4 choices with 4 candidates each. Outside: stem conv (10,4) 1->64 with
# bias 2,624 + BN 128, 4 kept 1x1 convs 64->64 with bias (4,160) + BN (128), Linear
# 64->12 (780).
DSCNN_CHOICES = tuple((f"blocks.{i}.choice", 64, 64, True) for i in range(4))
DSCNN_OUTSIDE = 64 * (1 * 10 * 4 + 1) + bn(64) + 4 * (conv(64, 64, 1, True) + bn(64)) + 780
# each choice 37,056 + 102,592 + 5,056 + 0 = 144,704; 4 x 144,704 + 20,684 = 599,500
# weights; + 16 logits.
DSCNN_TOTAL = 599_516

# MobileNetV1-0.25: each of the 13 depthwise-separable blocks; identity where c_in ==
# c_out and stride 1 (blocks 2, 4, 6-10, 12: 8 of them). Outside: stem conv3x3 3->8
# without bias 216 + BN 16, Linear 256->2 (514).
MOBILENET_CHOICES = tuple(
    (f"blocks.{i}", c_in, c_out, c_in == c_out and s == 1)
    for i, (c_in, c_out, s) in enumerate(
        [(8, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2)]
        + [(128, 128, 1)] * 5
        + [(128, 256, 2), (256, 256, 1)]
    )
)
MOBILENET_OUTSIDE = conv(3, 8, 3, False) + bn(8) + 256 * 2 + 2
# choices sum to 6,890,408; + 746 = 6,891,154 weights; + 47 logits.
MOBILENET_TOTAL = 6_891_201

CASES = {
    "resnet8": Case(
        ResNet8SuperNet, (3, 32, 32), 10, RESNET8_CHOICES, True, RESNET8_OUTSIDE, RESNET8_TOTAL
    ),
    "dscnn": Case(DSCNNSuperNet, (1, 49, 10), 12, DSCNN_CHOICES, True, DSCNN_OUTSIDE, DSCNN_TOTAL),
    "mobilenetv1": Case(
        MobileNetV1SuperNet,
        (3, 96, 96),
        2,
        MOBILENET_CHOICES,
        False,
        MOBILENET_OUTSIDE,
        MOBILENET_TOTAL,
    ),
}
each_model = pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Batches of 2: one intra-op thread is faster, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def batch(case: Case, size: int = 2) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(size, *case.input_shape)


class LeafTracer(fx.Tracer):
    """Keeps every SuperNetModule as one call_module node."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, SuperNetModule) or super().is_leaf_module(m, module_qualified_name)


def select(model: nn.Module, chooser: Callable[[str, SuperNetModule], str]) -> None:
    """Set every choice's logits so that the candidate ``chooser(name, module)`` wins."""
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, SuperNetModule):
                module.alpha.zero_()
                module.alpha[module.names.index(chooser(name, module))] = 1.0


def randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm affine parameters and running statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


# ---------------------------------------------------------------- structure and counts


@each_model
def test_output_shape_train_and_eval(case: Case) -> None:
    model = case.factory()
    x = batch(case)
    assert model.training
    assert model(x).shape == (2, case.num_classes)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, case.num_classes)


@each_model
def test_choices_candidates_and_identities(case: Case) -> None:
    model = case.factory()
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, SuperNetModule)]
    assert [n for n, _ in found] == [c[0] for c in case.choices]
    for (_, module), (_, _, _, identity) in zip(found, case.choices, strict=True):
        assert module.names == ([C3, C5, DW, ID] if identity else [C3, C5, DW])
        if identity:
            assert isinstance(module.candidates[ID], nn.Identity)


def test_counts_of_choices() -> None:
    assert [len(c.choices) for c in CASES.values()] == [7, 4, 13]
    candidates = [sum(4 if c[3] else 3 for c in case.choices) for case in CASES.values()]
    assert candidates == [24, 16, 47]
    assert [sum(c[3] for c in case.choices) for case in CASES.values()] == [3, 4, 8]


@each_model
def test_candidate_param_counts(case: Case) -> None:
    model = case.factory()
    for name, c_in, c_out, identity in case.choices:
        module = model.get_submodule(name)
        got = [sum(p.numel() for p in c.parameters()) for c in module.candidates.values()]
        assert got == candidate_params(c_in, c_out, case.bias, identity), name


def test_candidate_param_counts_spelled_out() -> None:
    # ResNet-8 stack2.conv2, 32->32 with bias: conv3x3 32*(32*9+1) + BN 64, conv5x5
    # 32*(32*25+1) + 64, dw_sep 32*(9+1) + 64 + 32*(32+1) + 64, identity 0.
    assert candidate_params(32, 32, True, True) == [9_312, 25_696, 1_504, 0]
    # DS-CNN block, 64->64 with bias.
    assert candidate_params(64, 64, True, True) == [37_056, 102_592, 5_056, 0]
    # MobileNetV1 block 128->128 without bias: 128*128*9 + 256, 128*128*25 + 256,
    # 128*9 + 256 + 128*128 + 256.
    assert candidate_params(128, 128, False, True) == [147_712, 409_856, 18_048, 0]
    # ResNet-8 stem 3->16 with bias: 16*(27+1) + 32, 16*(75+1) + 32, 3*10 + 6 + 16*4 + 32.
    assert candidate_params(3, 16, True, False) == [480, 1_248, 132]


@each_model
def test_total_params(case: Case) -> None:
    model = case.factory()
    inside = sum(sum(candidate_params(*c[1:3], case.bias, c[3])) for c in case.choices)
    logits = sum(4 if c[3] else 3 for c in case.choices)
    assert inside + case.outside + logits == case.total
    assert sum(p.numel() for p in model.parameters()) == case.total
    assert sum(m.alpha.numel() for m in supernet_modules(model)) == logits


def test_resnet8_without_shortcut_bn_has_192_fewer_params() -> None:
    model = ResNet8SuperNet(shortcut_bn=False)
    assert isinstance(model.stack2.shortcut, nn.Conv2d)
    assert sum(p.numel() for p in model.parameters()) == RESNET8_TOTAL - bn(32) - bn(64)


@each_model
def test_each_candidate_has_its_own_batchnorm(case: Case) -> None:
    model = case.factory()
    seen: set[int] = set()
    for module in supernet_modules(model):
        for name, candidate in module.candidates.items():
            norms = [m for m in candidate.modules() if isinstance(m, nn.BatchNorm2d)]
            assert (name == ID) == (not norms)
            assert not seen & {id(m) for m in norms}
            seen |= {id(m) for m in norms}
            if norms:  # the candidate ends in its BN, or BN then ReLU
                last = list(candidate.modules())[-1]
                assert last is norms[-1] or isinstance(last, nn.ReLU)


def test_relu_inside_candidates_follows_the_thesis() -> None:
    model = ResNet8SuperNet()
    # first conv of a stack: BN + ReLU inside; second conv: BN only (ReLU after the add)
    assert isinstance(model.stack2.conv1.candidates[C3][-1], nn.ReLU)
    assert isinstance(model.stack2.conv2.candidates[C3][-1], nn.BatchNorm2d)
    assert isinstance(model.stack2.conv2.candidates[DW].pointwise[-1], nn.BatchNorm2d)
    assert model.stack2.conv1.candidates[DW].depthwise.conv.stride == (2, 2)
    assert model.stack2.conv1.candidates[DW].pointwise.conv.stride == (1, 1)
    dscnn = DSCNNSuperNet(bn_momentum=0.99)
    assert isinstance(dscnn.blocks[0].choice.candidates[C5][-1], nn.ReLU)
    assert all(m.momentum == 0.99 for m in dscnn.modules() if isinstance(m, nn.BatchNorm2d))


# ---------------------------------------------------------------- tracing and choices


@each_model
def test_fx_traceable_with_supernet_leaves(case: Case) -> None:
    torch.manual_seed(1)
    model = case.factory()
    for module in supernet_modules(model):
        with torch.no_grad():
            module.alpha.normal_()
    gm = fx.GraphModule(model, LeafTracer().trace(model))
    leaves = [
        n.target
        for n in gm.graph.nodes
        if n.op == "call_module" and isinstance(gm.get_submodule(n.target), SuperNetModule)
    ]
    assert leaves == [c[0] for c in case.choices]
    model.eval(), gm.eval()
    x = batch(case)
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(gm(x), expected)
        # export on the traced graph: each leaf replaced by its argmax candidate
        exported = copy.deepcopy(gm)
        for target in leaves:
            exported.set_submodule(target, copy.deepcopy(gm.get_submodule(target).chosen()))
        assert not any(isinstance(m, SuperNetModule) for m in exported.modules())
        torch.testing.assert_close(exported(x), expected, rtol=1e-5, atol=1e-6)


def copy_conv_bn(dst: ConvBNAct, conv_: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """Seed conv (+ BN) into a candidate; a seed conv without bias gets a zero bias."""
    dst.conv.weight.copy_(conv_.weight)
    if conv_.bias is None:
        dst.conv.bias.zero_()
    else:
        dst.conv.bias.copy_(conv_.bias)
    dst.bn.load_state_dict(norm.state_dict())


def test_resnet8_conv3x3_everywhere_is_the_seed_resnet8() -> None:
    torch.manual_seed(0)
    seed = ResNet8()
    randomize_bn(seed)
    sn = ResNet8SuperNet(shortcut_bn=False)
    select(sn, lambda _name, _module: C3)
    with torch.no_grad():
        copy_conv_bn(sn.stem.candidates[C3], seed.stem.conv, seed.stem.bn)
        for k in (1, 2, 3):
            src, dst = seed.get_submodule(f"stack{k}"), sn.get_submodule(f"stack{k}")
            copy_conv_bn(dst.conv1.candidates[C3], src.conv_bn_relu.conv, src.conv_bn_relu.bn)
            copy_conv_bn(dst.conv2.candidates[C3], src.conv, src.bn)
            dst.shortcut.load_state_dict(src.shortcut.state_dict())
        sn.classifier.load_state_dict(seed.classifier.state_dict())
    seed.eval(), sn.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(sn(x), seed(x), rtol=1e-5, atol=1e-6)


def test_mobilenetv1_dw_sep_everywhere_is_the_seed_mobilenetv1() -> None:
    torch.manual_seed(0)
    seed = MobileNetV1()
    randomize_bn(seed)
    sn = MobileNetV1SuperNet()
    select(sn, lambda _name, _module: DW)
    sn.stem.load_state_dict(seed.stem.state_dict())
    for block, choice in zip(seed.blocks, sn.blocks, strict=True):
        choice.candidates[DW].load_state_dict(block.state_dict())
    sn.classifier.load_state_dict(seed.classifier.state_dict())
    seed.eval(), sn.eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(sn(x), seed(x))


@pytest.mark.parametrize(
    "names",
    [[C3] * 4, [C5] * 4, [DW] * 4, [ID] * 4, [DW, ID, C5, C3]],
    ids=["conv3x3", "conv5x5", "dw_sep", "identity", "mixed"],
)
def test_dscnn_eval_runs_the_chosen_candidates(names: list[str]) -> None:
    torch.manual_seed(0)
    model = DSCNNSuperNet()
    randomize_bn(model)
    select(model, lambda name, _module: names[int(name.split(".")[1])])
    model.eval()
    x = torch.randn(2, 1, 49, 10)
    with torch.no_grad():
        y = model.stem(x)
        for block, name in zip(model.blocks, names, strict=True):
            y = block.conv(block.choice.candidates[name](y))
        y = model.classifier(torch.squeeze(model.avgpool(y)))
        assert torch.equal(model(x), y)


def test_mobilenetv1_conv3x3_everywhere_runs_the_chosen_candidates() -> None:
    torch.manual_seed(0)
    model = MobileNetV1SuperNet()
    randomize_bn(model)
    select(model, lambda _name, _module: C3)
    model.eval()
    plain = nn.Sequential(
        model.stem,
        *(choice.candidates[C3] for choice in model.blocks),
        model.avgpool,
        nn.Flatten(),
        model.classifier,
    )
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))


# ---------------------------------------------------------------- helpers


def test_spec_reference_choice() -> None:
    module = spec_reference_choice()
    assert module.names == ["conv3x3", "two_conv3x3", "conv5x5", "identity"]
    counts = [sum(p.numel() for p in c.parameters()) for c in module.candidates.values()]
    # 32*(32*9+1), twice that, 32*(32*25+1), 0 -- convs with bias, no BN
    assert counts == [9_248, 18_496, 25_632, 0]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in module.modules())
    expected = (module.probabilities() * torch.tensor(counts, dtype=torch.float32)).sum()
    assert expected.item() == pytest.approx(13_344)
    with torch.no_grad():
        assert module(torch.randn(1, 32, 64, 64)).shape == (1, 32, 64, 64)


def test_standard_choice_identity_rule() -> None:
    assert standard_choice(16, 16).names == [C3, C5, DW, ID]
    assert standard_choice(16, 16, 2).names == [C3, C5, DW]
    assert standard_choice(16, 32).names == [C3, C5, DW]
    assert standard_choice(16, 16, identity=False).names == [C3, C5, DW]
    with pytest.raises(ValueError, match="identity"):
        standard_choice(16, 32, identity=True)
    no_bias = standard_choice(8, 8, bias=False, relu=False)
    assert all(m.bias is None for m in no_bias.modules() if isinstance(m, nn.Conv2d))
    assert not any(isinstance(m, nn.ReLU) for m in no_bias.candidates[C3].modules())


def test_dscnn_shared_bn_variant_has_bare_candidates_and_one_norm_per_block():
    from lightning_dnas import SuperNet

    net = DSCNNSuperNet(shared_bn=True)
    choices = [m for m in net.modules() if isinstance(m, SuperNetModule)]
    assert len(choices) == 4 and all(c.names == ["conv3x3", "conv5x5", "dw_sep", "identity"]
                                     for c in choices)
    for choice in choices:
        assert not any(isinstance(m, nn.BatchNorm2d) for m in choice.modules())
    # conv3x3 36,928 + conv5x5 102,464 + dw_sep (640 + 4,160) + shared BN 128 + kept 1x1
    # 4,288 per block; stem 2,752; classifier 780; 16 logits.
    per_block = 36_928 + 102_464 + 640 + 4_160 + 128 + 4_288
    assert sum(p.numel() for p in net.parameters()) == 2_752 + 4 * per_block + 780 + 16
    x = torch.randn(2, 1, 49, 10)
    for index in range(4):
        search = SuperNet(DSCNNSuperNet(shared_bn=True), x, cost="params")
        with torch.no_grad():
            for c in search.choices.values():
                c.alpha.copy_(torch.nn.functional.one_hot(torch.tensor(index), 4).float())
        search.export()  # raises unless the exported network equals the search network
        candidate = [36_928, 102_464, 640 + 4_160, 0][index]
        # stem conv 2,624, per block the candidate and the kept 1x1 conv 4,160, classifier
        assert search.hard_cost("params") == 2_624 + 4 * (candidate + 4_160) + 780
