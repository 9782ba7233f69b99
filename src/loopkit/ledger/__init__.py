"""The SQLite ledger: the only place loopkit speaks SQL."""

from .store import Ledger, ledger_path

__all__ = ["Ledger", "ledger_path"]
