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
        pid = int(batch["pid"])
        if pid == os.getpid():  # this process is asking, so it is not running that batch any more (a crash)
            return True
        os.kill(pid, 0)
    except (ProcessLookupError, TypeError, ValueError):
        return True
    except PermissionError:
        return False
    return False
