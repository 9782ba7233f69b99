"""Whether a batch marked `running` still has a live process (kill -9 and crashes leave it running)."""

from __future__ import annotations

import os
import socket
from typing import Any


def is_stale(batch: dict[str, Any]) -> bool:
    """A batch marked running whose process is gone counts as interrupted (SPEC.md §2)."""
    if batch.get("status") != "running":
        return False
    if batch.get("host") and batch["host"] != socket.gethostname():
        return False  # another machine's process: we cannot tell, so trust the row
    try:
        os.kill(int(batch["pid"]), 0)
    except (ProcessLookupError, TypeError, ValueError):
        return True
    except PermissionError:
        return False
    return False
