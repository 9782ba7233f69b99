"""Importing this registers every command on the app."""

from . import inspect_cmd, review_cmd, run_cmd  # noqa: F401
from . import ab_cmd  # noqa: F401, E402 - `loopkit ab`
from . import cost_cmd, diff_cmd  # noqa: F401, E402 - `loopkit cost`, `loopkit diff`
from . import schema_cmd  # noqa: F401, E402 - `loopkit schema`
from . import init_cmd  # noqa: F401, E402 - `loopkit init`
from . import report_cmd  # noqa: F401, E402 - `loopkit report`
from . import plan_cmd  # noqa: F401, E402 - `loopkit plan`
from . import fleet_cmd  # noqa: F401, E402 - `loopkit fleet run | status | resume-loop`
