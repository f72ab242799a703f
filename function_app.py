"""The Functions host indexes ``app`` from this file (Python v2 programming model).

Settings are validated here, at start-up: a missing or malformed one stops the worker with
a message naming it (visible in the host log and Application Insights).
"""

import os
from pathlib import Path

from slipway.functions import create_function_app

app = create_function_app(os.environ, app_root=Path(__file__).parent)
