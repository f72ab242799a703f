"""Adapters: the only code that talks to Azure SDKs (storage, Key Vault, identity).

Each adapter is a small class with Azure-SDK-style verbs; ``slipway.bootstrap`` constructs
them, everything else receives them.
"""
