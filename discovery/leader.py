"""Which replica runs GC, snapshots and compaction: the storage decides (storage/leadership.py)."""

from __future__ import annotations

from storage.leadership import Leadership, SoleLeader

__all__ = ["Leadership", "SoleLeader"]
