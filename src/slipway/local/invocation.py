"""Calling a function's user code the way the Python worker does."""

from __future__ import annotations

import asyncio
import inspect
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func


@dataclass
class LocalContext:
    """The invocation context the worker passes as ``context`` (the fields user code reads)."""

    function_name: str
    function_directory: str
    invocation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    trace_context: Any = None
    retry_context: Any = None
    thread_local_storage: Any = None


async def invoke(function: func.Function, arguments: Mapping[str, Any], *, function_directory: str) -> Any:
    """Run the user function with its binding arguments (and ``context`` if it asks for it)."""
    user: Callable[..., Any] = function.get_user_function()
    kwargs = dict(arguments)
    if "context" in inspect.signature(user).parameters and "context" not in kwargs:
        kwargs["context"] = LocalContext(function.get_function_name(), function_directory)
    if inspect.iscoroutinefunction(user):
        return await user(**kwargs)
    # The worker runs sync functions on its thread pool; so does the runner.
    return await asyncio.to_thread(lambda: user(**kwargs))


def binding(function: func.Function, binding_type: str) -> dict[str, Any] | None:
    """The JSON of the function's first binding of ``binding_type``, if any."""
    for item in json.loads(function.get_function_json())["bindings"]:
        if item.get("type") == binding_type:
            return dict(item)
    return None
