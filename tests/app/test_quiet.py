"""The application drops Lightning's litlogger tip and nothing else (app/quiet.py)."""

from __future__ import annotations

import logging
import subprocess
import sys

from lightning.pytorch.utilities import rank_zero_info

from lightning_dnas.app.quiet import LIGHTNING_LOGGER, drop_lightning_tips


def test_the_tip_is_dropped_and_other_lightning_lines_still_show(caplog) -> None:
    drop_lightning_tips()
    drop_lightning_tips()  # once per process: a second call adds no second filter
    assert len(logging.getLogger(LIGHTNING_LOGGER).filters) >= 1
    with caplog.at_level(logging.INFO, logger=LIGHTNING_LOGGER):
        rank_zero_info("💡 Tip: For seamless cloud logging ... try installing litlogger")
        rank_zero_info("GPU available: False, used: False")
    assert "Tip" not in caplog.text
    assert "GPU available: False, used: False" in caplog.text


def test_a_default_trainer_prints_the_tip_only_without_the_filter(tmp_path) -> None:
    """In a fresh interpreter a Trainer prints the tip; after drop_lightning_tips it
    does not, and its other lines still show."""
    code = ("import sys, lightning as L\n"
            "from lightning_dnas.app.quiet import drop_lightning_tips\n"
            "if sys.argv[1] == 'drop': drop_lightning_tips()\n"
            f"L.Trainer(default_root_dir={str(tmp_path)!r}, logger=True)\n")  # fmt: skip
    out = {}
    for mode in ("keep", "drop"):
        done = subprocess.run([sys.executable, "-c", code, mode], capture_output=True,
                              text=True, check=True)  # fmt: skip
        out[mode] = done.stdout + done.stderr
    assert "Tip" in out["keep"]
    assert "Tip" not in out["drop"]
    assert "GPU available" in out["drop"]
