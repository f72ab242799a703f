"""The HTTP API (FastAPI): routes parse a request, call a service, and map errors to HTTP.

The same app runs inside the Functions host (``AsgiFunctionApp``), under uvicorn in
``slipway dev``, and in tests over real HTTP.
"""
