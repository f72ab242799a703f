"""User code in processes of its own: the boundary between workflow code and the platform.

Every load of a workflow file (to list, validate or plan it) and every step attempt runs in a
child process, never in the Functions worker. :mod:`~slipway.isolation.boundary` says, in one
place, what such a process can reach (who it runs as, its environment, the files it sees);
:mod:`~slipway.isolation.launcher` starts one from the platform, streams its output and stops
it; :mod:`~slipway.isolation.supervisor` is the child's first process (it reaps and kills every
process the step leaves behind); :mod:`~slipway.isolation.child` loads the workflow and runs the
step inside it. The last three are copied, with :mod:`slipway.sdk`, into the folder the child
imports from: the child sees only these modules of Slipway.
"""
