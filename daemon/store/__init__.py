"""Durable storage of records, tags and dead letters behind the :class:`Store` protocol.

``open_store(settings)`` is what the daemon and the CLI call; SQLite is the embedded default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon.store.base import (
    CommitResult,
    Store,
    StoreCounts,
    StoredDeadLetter,
    StoreError,
    StoreUnavailable,
)
from daemon.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from daemon.config import Settings

__all__ = [
    "CommitResult",
    "SQLiteStore",
    "Store",
    "StoreCounts",
    "StoreError",
    "StoreUnavailable",
    "StoredDeadLetter",
    "open_store",
]


def open_store(settings: Settings, create: bool = True, background_checkpoint: bool = False) -> SQLiteStore:
    """Open (and migrate) the store at ``settings.store_path`` with ``settings.sqlite_synchronous``.

    Args:
        settings: Where the data dir is and how durable commits must be.
        create: Create the data dir and an empty store if there is none. With ``False`` a missing store
            raises :class:`StoreError` (readers such as ``aced query`` should not create one by mistake).
        background_checkpoint: Checkpoint the WAL from a thread of its own, never inside a commit (the
            daemon, whose commits are on the ack path).

    Raises:
        StoreUnavailable: The file or its directory cannot be opened or written.
        StoreError: ``create=False`` and there is no store yet.
    """
    path = settings.store_path
    if not path.exists():
        if not create:
            raise StoreError(f"no store at {path} (nothing recorded yet, or ACED_DATA_DIR points elsewhere)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create {path.parent}: {exc.strerror or exc}") from None
    store = SQLiteStore(
        path,
        synchronous=settings.sqlite_synchronous,
        background_checkpoint_s=1.0 if background_checkpoint else None,
    )
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store
