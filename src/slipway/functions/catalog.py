"""The indexed functions of a Functions app, computed once per app object.

``FunctionApp.get_functions()`` may run once per app: a second call re-registers every
function and raises on duplicate names. The host, the local runner and the tests all need
the index, so it is computed here once and shared.
"""

from __future__ import annotations

import threading
import weakref

import azure.functions as func

_lock = threading.Lock()
_cache: weakref.WeakKeyDictionary[func.FunctionRegister, tuple[func.Function, ...]] = (
    weakref.WeakKeyDictionary()
)


def indexed_functions(app: func.FunctionRegister) -> tuple[func.Function, ...]:
    """Return the app's functions, indexing it on first use."""
    with _lock:
        found = _cache.get(app)
        if found is None:
            found = tuple(app.get_functions())
            _cache[app] = found
        return found


def find_function(app: func.FunctionRegister, name: str) -> func.Function | None:
    """The function registered under ``name`` (case-insensitive, as the host matches)."""
    wanted = name.lower()
    for function in indexed_functions(app):
        if function.get_function_name().lower() == wanted:
            return function
    return None


def trigger_type(function: func.Function) -> str:
    """The binding type of the function's trigger, e.g. ``queueTrigger``."""
    return function.get_trigger().get_binding_name()
