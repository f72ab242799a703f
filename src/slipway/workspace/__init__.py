"""The workspace: the folder of workflow scripts, its safe paths, store, archive and journal.

Everything here works on a plain folder (an Azure Files share is mounted as one) and never
leaves it: paths are validated against Azure Files' naming rules, opened one component at a
time without following symbolic links, and every write is atomic.
"""
