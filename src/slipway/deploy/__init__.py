"""The build half of the deploy pipeline, as plain domain code (no Azure, no orchestration).

``detect`` turns a checked-out project folder into a :class:`~slipway.deploy.detect.BuildPlan`
(plain static site or Node project, package manager, commands, output folder); ``cache`` keeps
``node_modules`` keyed on the lockfile; ``command`` runs one command under a time limit in its
own process group with streamed, bounded output; ``build`` runs install, test and build in a
clean environment; ``package`` zips the output folder deterministically with the deployment's
``/.well-known/slipway-deploy.json``.
"""
