"""Structured console logs for the local runner: one line per event, context as key=value.

Under the Functions host the same ``extra`` fields become custom dimensions in Application
Insights; locally they are appended to the message so they can be read and grepped.
"""

from __future__ import annotations

import logging
import sys

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
        if context:
            line += " " + " ".join(f"{k}={_quote(v)}" for k, v in sorted(context.items()))
        return line


def _quote(value: object) -> str:
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


def configure_runner_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("slipway").setLevel(level.upper() if level.upper() in logging._nameToLevel else "INFO")
