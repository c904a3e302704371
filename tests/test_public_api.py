"""The top-level package: its names, and that the engine does not pull in Lightning."""

from __future__ import annotations

import subprocess
import sys

import lightning_dnas


def test_every_public_name_resolves() -> None:
    for name in lightning_dnas.__all__:
        assert getattr(lightning_dnas, name) is not None, name
    assert set(lightning_dnas.__all__) <= set(dir(lightning_dnas))


def test_unknown_name_raises_attribute_error() -> None:
    try:
        lightning_dnas.NoSuchThing  # noqa: B018
    except AttributeError as err:
        assert "NoSuchThing" in str(err)
    else:
        raise AssertionError("expected AttributeError")


def test_engine_import_leaves_lightning_out_until_the_callback_is_used() -> None:
    code = (
        "import sys, lightning_dnas\n"
        "from lightning_dnas import PIT, SuperNet, SuperNetModule, restore\n"
        "assert 'lightning' not in sys.modules, 'engine import loaded Lightning'\n"
        "from lightning_dnas import DNASCallback\n"
        "from lightning_dnas.callback import DNASCallback as direct\n"
        "assert DNASCallback is direct and 'lightning' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
