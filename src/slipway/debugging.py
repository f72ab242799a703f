"""debugpy in the worker process, started once, when the settings ask for it.

The worker imports the function app once at start-up; that is where ``listen`` runs. Workflow
code runs in processes of its own (:mod:`slipway.isolation`): debugpy follows them (its
subprocess support, on here explicitly) by rewriting the command line of every Python process
the worker starts, and of the fork the supervisor makes for the user code, so that each one
connects to the adapter. The adapter announces each to the attached client (``debugpyAttach``),
which attaches to it on a connection of its own (VS Code does this by itself); each process
waits for that before it runs anything. Breakpoints in workspace files match because the child
compiles them under their real paths.
"""

from __future__ import annotations

import logging
import threading

from slipway.config import DebugSettings

log = logging.getLogger("slipway.debugging")

_lock = threading.Lock()
_listening: tuple[str, int] | None = None


def start_debugging(settings: DebugSettings | None) -> tuple[str, int] | None:
    """Listen with debugpy (once per process); the address, or None when debugging is off."""
    global _listening
    if settings is None:
        return None
    with _lock:
        if _listening is None:
            import debugpy  # imported only when asked for: it patches threading on import

            # The default, spelled out: without it breakpoints in steps never stop (they run
            # in child processes). It cannot be set from the client's attach configuration.
            debugpy.configure(subProcess=True)
            try:
                host, port = debugpy.listen((settings.host, settings.port))
            except (OSError, RuntimeError) as exc:
                # A second worker process, or another program on the port: run without a
                # debugger rather than not at all.
                log.error(
                    "debugpy could not listen; starting without a debugger: %s",
                    exc,
                    extra={"debug_host": settings.host, "debug_port": settings.port},
                )
                return None
            _listening = (host, port)
            log.warning(
                "debugpy is listening: attach a debugger",
                extra={"debug_host": host, "debug_port": port},
            )
        address = _listening
    if settings.wait_for_client:
        import debugpy

        log.warning("waiting for a debugger to attach (DEBUG_WAIT_FOR_CLIENT=true)")
        debugpy.wait_for_client()
    return address
