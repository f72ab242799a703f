"""The workflow engine: workflows loaded from ``/workspace/workflows`` by version, their runs,
steps and logs.

The orchestration binding in ``slipway.functions.workflows`` walks a run's plan; everything it
calls lives here and does not depend on the Functions runtime.
"""
