#!/usr/bin/env bash
# One entry point for a fresh machine: creates .venv (torch from the local wheel cache or
# PyPI, then this package with its dev extras) on first use, then runs what you ask.
#   ./dev.sh demo [overrides]   the main job: the cascade search on embedded MNIST-1D data
#   ./dev.sh test [pytest options]   the test suite
set -euo pipefail
cd "$(dirname "$0")"
venv=.venv
stamp="$venv/.installed-$(cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "dev.sh: installing into $venv (first run only, about 2 minutes)..." >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
  "$venv/bin/python" -m pip install -q -e ".[dev]"
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
export PYTHONUNBUFFERED=1
cmd="${1:-}"
shift || true
case "$cmd" in
  demo) exec "$venv/bin/python" -m lightning_dnas.train "$@" ;;
  test) exec "$venv/bin/python" -m pytest -q -n 2 "$@" ;;
  *) echo "usage: ./dev.sh demo [options] | ./dev.sh test [pytest options]" >&2; exit 2 ;;
esac
