"""exclude= (module names with globs, module types): excluded layers are kept whole, without
a warning, and still counted in the cost."""

import warnings

import torch
from torch import nn

from tests.support import assert_faithful, conv_linear_costs

X = torch.randn(2, 3, 5, 5)


def net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 6, 1), nn.ReLU()), nn.Conv2d(6, 5, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(5 * 25, 7), nn.ReLU(), nn.Linear(7, 2),
    )  # fmt: skip


def test_excluded_layers_are_kept_whole_and_counted():
    for exclude, searched in (("3.*", {"0", "4", "7"}), (nn.Linear, {"0", "3/0", "4"}),
                              (["0", "4", nn.Linear], {"3/0"})):  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            search = assert_faithful(net(), X, exclude=exclude)
        assert set(search.channel_masks) == searched
        with torch.no_grad():
            for p in search.nas_parameters():
                p.zero_()  # prune all that can be pruned: one channel left per group
        exported = search.export()
        params, _ = conv_linear_costs(exported, X)
        assert search.hard_cost("params") == params  # excluded layers counted, whole
        for name, layer in net().named_modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)) and name.replace(".", "/") not in searched:
                width = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
                got = exported.get_submodule(name)
                got_width = got.out_channels if isinstance(got, nn.Conv2d) else got.out_features
                assert got_width == width, name
