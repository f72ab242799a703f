"""Stopping a child process together with everything it started.

Commands Slipway runs (workflow ``shell`` steps, builds, git, the SWA CLI) start in their own
session, so their process group holds every descendant that did not leave it on purpose.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import Any


def kill_process_group(process: subprocess.Popen[Any], *, grace: float = 0.0) -> None:
    """SIGTERM the group and wait up to ``grace`` seconds for the leader to exit (when
    ``grace`` > 0), then SIGKILL whatever is left: children that ignored SIGTERM, or that
    outlived the group leader."""
    if grace > 0:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
