"""The local runner behind ``make dev``: the whole product on one machine without Docker.

It plays the Functions host's part for one app: serves its HTTP functions with uvicorn,
polls the queues of its queue triggers in Azurite and invokes them as the host does
(host.json's batch size, visibility timeout and poison queue after ``maxDequeueCount``),
and runs orchestrations and activities through the real Durable SDK replay code.
"""
