"""``python -m lightning_dnas.train [overrides]``: the Hydra application
(:mod:`lightning_dnas.app.train`; ``--help`` lists the config groups)."""

from .app.train import main

if __name__ == "__main__":
    main()
