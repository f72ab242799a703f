"""GitHub → /workspace: connection, webhook verification, the sync engine and its journal.

A connected repository's branch is mirrored into the workspace rsync-style: the webhook only
verifies and enqueues, a singleton orchestration runs one sync at a time to the newest head,
and the engine fetches into a bare mirror on local disk and applies the change with
temp-and-rename writes.
"""
