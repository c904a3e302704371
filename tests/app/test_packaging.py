"""The configs ship inside the package, so the console script finds them after a
non-editable install (Hydra reads them from ``pkg://lightning_dnas.conf``)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_every_config_file(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = next(tmp_path.glob("lightning_dnas-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"lightning_dnas/conf/{p.relative_to(ROOT / 'lightning_dnas' / 'conf')}"
               for p in (ROOT / "lightning_dnas" / "conf").rglob("*.yaml")}
    assert configs and configs <= names, sorted(configs - names)
    assert "lightning_dnas/conf/config.yaml" in names
