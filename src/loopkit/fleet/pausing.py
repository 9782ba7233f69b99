"""`loopkit fleet resume-loop`: un-pause a loop the fleet paused, with a `fleet_resume` event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..ledger import Ledger
from ..ledger import fleet as rows
from .load import load_fleet


def resume_loop(ledger_path: Path | None, fleet_file: Path, name: str) -> dict[str, Any]:
    fleet = load_fleet(fleet_file)
    fleet.loop(name)  # an unknown loop is a usage error naming the fleet's loops
    ledger = Ledger(ledger_path)
    row = rows.find_fleet(ledger, path=str(fleet.path))
    if row is None:
        raise UsageError(f"fleet {fleet.name} has not run in this ledger yet; nothing is paused")
    paused = rows.paused_loops(ledger, row["id"]).get(name)
    if paused is None:
        raise UsageError(f"loop {name} of fleet {fleet.name} is not paused")
    rows.fleet_event(ledger, row["id"], "fleet_resume", name, {"was_paused": paused.get("reason")})
    return {"fleet_id": row["id"], "loop": name, "was_paused": paused.get("reason")}
