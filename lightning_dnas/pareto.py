"""``python -m lightning_dnas.pareto <sweep dir> [...]``: the Pareto tool of
:mod:`lightning_dnas.app.pareto` (see ``--help``)."""

from .app.pareto.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
