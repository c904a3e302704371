"""A default run prints no warning that the user cannot act on: Lightning 2.6.6's
``LeafSpec`` FutureWarning (its CombinedLoader on torch 2.14, at every fit's loader setup
and again after each ``warnings.catch_warnings()``) is silenced by importing the callback,
and only that message from that module. Run in a fresh interpreter with Python's default
warning filters (pytest's own filters would hide what a user sees)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

FITS = textwrap.dedent("""
    import sys, warnings
    import lightning as L
    from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel
    if sys.argv[1] == "callback":
        from lightning_dnas import DNASCallback
    for _ in range(2):  # as an application does: each fit inside catch_warnings
        with warnings.catch_warnings():
            callbacks = ([DNASCallback(search_epochs=1, finetune_epochs=1, export_dir=False)]
                         if sys.argv[1] == "callback" else [])
            L.Trainer(callbacks=callbacks, max_epochs=2, limit_train_batches=1,
                      limit_val_batches=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      ).fit(BoringModel(), BoringDataModule())
    # The same message from any other module still shows.
    warnings.warn_explicit("`isinstance(treespec, LeafSpec)` is deprecated (elsewhere)",
                           FutureWarning, "elsewhere.py", 1, module="elsewhere")
""")


def _stderr(mode: str) -> str:
    run = subprocess.run([sys.executable, "-c", FITS, mode], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stderr


def test_lightning_alone_prints_it_at_every_fit():
    assert _stderr("plain").count("LeafSpec)` is deprecated, use") == 2


def test_with_the_callback_it_is_gone_and_nothing_else_is_hidden():
    err = _stderr("callback")
    assert "LeafSpec)` is deprecated, use" not in err
    assert "LeafSpec)` is deprecated (elsewhere)" in err
