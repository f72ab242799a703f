"""Slipway: a self-hosted workflow and deployment engine on Azure Functions."""

__version__ = "0.1.0"
