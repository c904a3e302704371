"""The application's output without Lightning's advertisements.

Lightning 2.6 logs a "💡 Tip: ... try installing litlogger" line at INFO (logger
``lightning.pytorch.utilities.rank_zero``) each time a Trainer sets up its loggers or
checkpoints, three times in the default cascade, between the lines the main job prints
for its user. Only lines starting with that marker are dropped; every other Lightning
message still shows.
"""

from __future__ import annotations

import logging

TIP = "💡 Tip:"
LIGHTNING_LOGGER = "lightning.pytorch.utilities.rank_zero"


class _DropTips(logging.Filter):
    """Drops the log records whose message starts with :data:`TIP`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TIP)


def drop_lightning_tips() -> None:
    """Filter Lightning's tips out of its rank-zero logger (once per process)."""
    logger = logging.getLogger(LIGHTNING_LOGGER)
    if not any(isinstance(f, _DropTips) for f in logger.filters):
        logger.addFilter(_DropTips())
