"""The durable local outbox (DESIGN §8): decision events are sealed into the hash chain
and written here before the Authorize response; exporters ship them from here.

Storage: one SQLite database (stdlib ``sqlite3``) in WAL mode with
``synchronous=NORMAL`` (https://www.sqlite.org/wal.html,
https://www.sqlite.org/pragma.html#pragma_synchronous): a commit appends to the WAL
file with ``write()``, so it is in the OS once :meth:`Outbox.append` returns and
survives a SIGKILL of the process; no fsync happens per commit. :meth:`Outbox.run_fsync`
runs ``PRAGMA wal_checkpoint(PASSIVE)`` at most every interval, which fsyncs the WAL
before copying it into the database and the database after; a power loss loses at
most the events of one interval. The checkpoint runs in a worker thread on its own
connection, and the writer's automatic checkpoint is off, so the event loop never
waits on the disk (``run_fsync`` also keeps the WAL short: run it).

Tables::

    events(seq INTEGER PRIMARY KEY, event_id TEXT, time REAL (epoch seconds),
           size INTEGER (bytes of body), body BLOB (sealed canonical JSON))
    cursors(sink TEXT PRIMARY KEY, seq INTEGER)  -- the last seq the sink acknowledged
    meta(key TEXT PRIMARY KEY, value TEXT)       -- instance_id; head_seq, head_hash

The stored events are always one run of consecutive ``seq``: rows go only from the
oldest end, once every cursor passed them (:meth:`Outbox.ack` deletes up to 512 at a
time, :meth:`Outbox.run_fsync` the rest), or at the cap. At the cap (``max_bytes`` of
bodies) delivered rows go first; then the oldest events go, delivered or not, counted in
``capgate_outbox_dropped_events_total``, cursors move past them, and a gap event is
sealed at the head of the chain (after the events that survived, so a verifier meets
the hole first and the gap that explains it later)::

    {"schema_version": "capgate.decision_event.v1", "event_type": "gap",
     "event_id": <UUIDv7>, "time": <RFC 3339>,
     "dropped": {"from_seq", "to_seq", "count", "last_hash": <hash of to_seq>}}

Threads: everything runs on the event loop thread except :meth:`Outbox.read` (a worker
thread, its own connection per sink) and the checkpoint of :meth:`Outbox.run_fsync`.
One process per database file (a lock file enforces it).

Example::

    outbox = Outbox.open(path, instance_id="capgate-0", max_bytes=1 << 30,
                         sink_names=["siem"], clock=SystemClock(), metrics=metrics)
    stored = outbox.append(event)          # StoredEvent(seq=1, ...)
    batch = await asyncio.to_thread(outbox.read, "siem", 500)
    outbox.ack("siem", batch[-1].seq)
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import uuid6

from capgate.clock import Clock, rfc3339
from capgate.events.chain import GENESIS_HASH, seal
from capgate.events.event import SCHEMA_VERSION
from capgate.events.sinks.base import StoredEvent
from capgate.observability.metrics import Metrics

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL,
    time REAL NOT NULL, size INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_INSERT = "INSERT INTO events (seq, event_id, time, size, body) VALUES (?, ?, ?, ?, ?)"
_READ = "SELECT seq, event_id, time, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
_KIB = 1024
_WAL_SIZE_LIMIT_BYTES = 64 << 20
_GAP_RESERVE = 512  # bytes kept free for the gap event itself
# Delivered rows deleted per transaction on the event loop (~1-2 ms for 2 KB events).
_PRUNE_CHUNK = 512


class OutboxError(OSError):
    """The outbox database could not be opened, read or written (sqlite3 errors, a
    second process on the same file)."""


class Checkpointer(Protocol):
    """Signed checkpoints over the chain head (capgate.events.checkpoint)."""

    def due(self, events_since_last: int, now: datetime) -> bool: ...

    def event(
        self, head_seq: int, head_hash: str, now: datetime, new_id: Callable[[], str]
    ) -> dict[str, Any]: ...


def new_uuid7() -> str:
    """A UUIDv7 (RFC 9562) string."""
    return str(uuid6.uuid7())


class Outbox:
    """Use :meth:`open`. Not thread-safe except :meth:`read` (see the module docstring)."""

    def __init__(
        self,
        db: sqlite3.Connection,
        lock_fd: int,
        path: Path,
        *,
        instance_id: str,
        max_bytes: int,
        clock: Clock,
        metrics: Metrics,
        checkpointer: Checkpointer | None,
        new_id: Callable[[], str],
    ) -> None:
        self.instance_id = instance_id
        self._db = db
        self._lock_fd = lock_fd
        self._path = path
        self._max_bytes = max_bytes
        self._clock = clock
        self._metrics = metrics
        self._checkpointer = checkpointer
        self._new_id = new_id
        self._head_seq = 0
        self._head_hash = GENESIS_HASH
        self._cursors: dict[str, int] = {}
        self._floor = 0  # the lowest cursor: every sink has the rows up to it
        self._pruned = 0  # rows up to this seq are deleted
        self._bytes = 0
        self._count = 0
        self._since_checkpoint = 0
        self._dirty = False  # written since the last checkpoint
        self._wakeup: asyncio.Future[None] | None = None
        self._readers: dict[str, tuple[threading.Lock, sqlite3.Connection]] = {}
        self._fsync_lock = threading.Lock()
        self._fsync_db: sqlite3.Connection | None = None

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        instance_id: str,
        max_bytes: int,
        sink_names: Iterable[str],
        clock: Clock,
        metrics: Metrics,
        checkpointer: Checkpointer | None = None,
        new_id: Callable[[], str] = new_uuid7,
    ) -> Outbox:
        """Open (or create) the outbox at ``path`` and restore the chain head, so
        ``seq`` and ``prev_hash`` continue after a restart (SIGKILL included).

        ``sink_names``: one cursor each; a new sink starts at the oldest stored event
        (it gets everything stored), cursors of sinks no longer named are dropped.
        ``max_bytes``: the cap on stored bodies. ``new_id``: event ids of gap and
        checkpoint events.

        Raises:
            ValueError: the database belongs to another ``instance_id``; no sinks.
            OutboxError: the file cannot be opened or locked (another process uses it).
        """
        sinks = list(dict.fromkeys(sink_names))
        if not sinks:
            raise ValueError("an outbox needs at least one sink")
        path = Path(path)
        lock_fd = _lock(path)
        try:
            db = _connect(path, create=True)
        except BaseException:
            os.close(lock_fd)
            raise
        outbox = cls(
            db,
            lock_fd,
            path,
            instance_id=instance_id,
            max_bytes=max_bytes,
            clock=clock,
            metrics=metrics,
            checkpointer=checkpointer,
            new_id=new_id,
        )
        try:
            outbox._restore(sinks)
            for sink in sinks:
                outbox._readers[sink] = (threading.Lock(), _connect(path))
            outbox._fsync_db = _connect(path)
        except BaseException:
            outbox.close()
            raise
        return outbox

    @property
    def head_seq(self) -> int:
        """The ``seq`` of the last sealed event (0 before the first)."""
        return self._head_seq

    @property
    def head_hash(self) -> str:
        """The ``hash`` of the last sealed event (GENESIS_HASH before the first)."""
        return self._head_hash

    @property
    def at_cap(self) -> bool:
        """True while the stored bodies are within a margin of ``max_bytes`` (the larger
        of 64 KiB and 16 mean events, at most a quarter of the cap): one of the next
        appends will drop the oldest events. The pipeline denies capabilities marked
        ``audit_required`` meanwhile."""
        return self._bytes >= self._max_bytes - self._margin()

    def cursor(self, sink: str) -> int:
        """The last ``seq`` ``sink`` acknowledged (or that a drop moved it past)."""
        return self._cursors[sink]

    def append(self, event: dict[str, Any]) -> StoredEvent:
        """Seal ``event`` with the next ``seq`` and store it (in the OS before this
        returns); then a checkpoint event, when the checkpointer says one is due. At the
        cap, the oldest events are dropped first and a gap event sealed before this one.

        Raises:
            ValueError: ``event`` is not representable as RFC 8785 JSON (NaN, ...).
            OutboxError: the database could not be written (nothing was stored).
        """
        stored = self._store(event)
        checkpointer = self._checkpointer
        if checkpointer is not None:
            now = self._clock.now()
            if checkpointer.due(self._since_checkpoint, now):
                checkpoint = checkpointer.event(self._head_seq, self._head_hash, now, self._new_id)
                self._store(checkpoint)
                self._since_checkpoint = 0
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)
        return stored

    async def wait_for_append(self, after_seq: int) -> None:
        """Return once the head is past ``after_seq`` (at once if it already is)."""
        while self._head_seq <= after_seq:
            if self._wakeup is None:
                self._wakeup = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._wakeup)

    def read(self, sink: str, limit: int) -> list[StoredEvent]:
        """Up to ``limit`` events after ``sink``'s cursor, in ``seq`` order. Safe in a
        worker thread (``asyncio.to_thread``): its own connection, a WAL snapshot.

        Raises:
            KeyError: ``sink`` is not configured.
            OutboxError: the database could not be read.
        """
        after = self._cursors[sink]
        lock, reader = self._readers[sink]
        with lock:
            try:
                rows = reader.execute(_READ, (after, limit)).fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"{self._path}: read failed: {exc}") from exc
        return [StoredEvent(seq, event_id, time, body) for seq, event_id, time, body in rows]

    def ack(self, sink: str, seq: int) -> None:
        """``sink`` has every event up to ``seq``: move and persist its cursor, and
        delete the rows every cursor has passed (at most 512 here, to keep the event
        loop free; :meth:`run_fsync` deletes the rest). An older ``seq`` is ignored.

        Raises:
            KeyError: ``sink`` is not configured.
            ValueError: ``seq`` is past the head.
            OutboxError: the database could not be written (the cursor did not move).
        """
        if seq <= self._cursors[sink]:
            return
        if seq > self._head_seq:
            raise ValueError(f"cannot acknowledge seq {seq} past the head {self._head_seq}")
        try:
            self._db.execute("UPDATE cursors SET seq = ? WHERE sink = ?", (seq, sink))
        except sqlite3.Error as exc:
            raise OutboxError(f"{self._path}: cursor update failed: {exc}") from exc
        self._cursors[sink] = seq
        self._floor = min(self._cursors.values())
        self._dirty = True
        self._prune(_PRUNE_CHUNK)

    def oldest_unacknowledged_time(self, sink: str) -> float | None:
        """The ``time`` (epoch seconds) of the first event after ``sink``'s cursor;
        None when the sink has everything."""
        row = self._db.execute(
            "SELECT time FROM events WHERE seq > ? ORDER BY seq LIMIT 1", (self._cursors[sink],)
        ).fetchone()
        return None if row is None else float(row[0])

    async def run_fsync(self, interval_seconds: float) -> None:
        """Forever: at most every ``interval_seconds``, when something was written,
        ``PRAGMA wal_checkpoint(PASSIVE)`` in a worker thread (it fsyncs the WAL and the
        database), counted in ``capgate_outbox_fsyncs_total``; before it, delete the
        delivered rows acks left (in chunks, yielding between). Cancel to stop."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            await asyncio.sleep(max(0.0, started + interval_seconds - loop.time()))
            started = loop.time()
            left = self._prune(_PRUNE_CHUNK)
            while left:  # a long backlog: chunk by chunk, letting requests run between
                await asyncio.sleep(0)
                left = self._prune(_PRUNE_CHUNK)
            if not self._dirty:
                continue
            self._dirty = False
            complete = await asyncio.to_thread(self._checkpoint)
            self._metrics.outbox_fsyncs.inc()
            if not complete:  # a reader pinned some frames: try again next time
                self._dirty = True

    def close(self) -> None:
        """Checkpoint (TRUNCATE: the WAL is emptied, everything fsynced) and close.
        Stop the exporters and the fsync task first; a read in flight is waited for."""
        for lock, reader in self._readers.values():
            with lock:
                reader.close()
        self._readers = {}
        with self._fsync_lock:
            if self._fsync_db is not None:
                self._fsync_db.close()
                self._fsync_db = None
        if self._lock_fd < 0:
            return
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # the WAL is replayed at the next open
        finally:
            self._db.close()
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- internals --------------------------------------------------------------------

    def _store(self, event: dict[str, Any]) -> StoredEvent:
        seq = self._head_seq + 1
        body, digest = seal(event, instance_id=self.instance_id, seq=seq, prev_hash=self._head_hash)
        if self._bytes + len(body) > self._max_bytes:
            self._prune()  # delivered rows go first, and are not drops
        if self._bytes + len(body) > self._max_bytes and self._count:
            try:
                self._drop_oldest(len(body))
            except sqlite3.Error as exc:
                raise OutboxError(f"{self._path}: dropping at the cap failed: {exc}") from exc
            seq = self._head_seq + 1
            body, digest = seal(
                event, instance_id=self.instance_id, seq=seq, prev_hash=self._head_hash
            )
        event_id = event.get("event_id")
        event_id = event_id if isinstance(event_id, str) else ""
        moment = self._event_time(event.get("time"))
        try:
            self._db.execute(_INSERT, (seq, event_id, moment, len(body), body))
        except sqlite3.Error as exc:
            raise OutboxError(f"{self._path}: append failed: {exc}") from exc
        self._sealed(seq, digest, len(body))
        return StoredEvent(seq, event_id, moment, body)

    def _sealed(self, seq: int, digest: str, size: int) -> None:
        self._head_seq = seq
        self._head_hash = digest
        self._bytes += size
        self._count += 1
        self._since_checkpoint += 1
        self._dirty = True
        self._update_gauges()

    def _drop_oldest(self, incoming: int) -> None:
        """Delete the oldest events until ``incoming`` bytes, a gap event and half the
        margin fit under the cap; seal the gap event in the same transaction."""
        target = self._max_bytes - incoming - _GAP_RESERVE - self._margin() // 2
        freed = dropped = 0
        to_seq = self._pruned
        rows = self._db.execute("SELECT seq, size FROM events ORDER BY seq")
        try:
            for seq, size in rows:
                if self._bytes - freed <= target:
                    break
                freed += size
                dropped += 1
                to_seq = seq
        finally:
            rows.close()  # ends the statement's read transaction
        from_seq = to_seq - dropped + 1
        # A gap event among the dropped ones took its announcement with it: the new gap
        # covers its range too, so a lagging sink's whole hole stays announced.
        earlier = self._db.execute(
            "SELECT body FROM events WHERE seq BETWEEN ? AND ? AND instr(body, ?) > 0",
            (from_seq, to_seq, b'"event_type":"gap"'),
        ).fetchall()
        for (body,) in earlier:
            from_seq = min(from_seq, json.loads(body)["dropped"]["from_seq"])
        (last_body,) = self._db.execute(
            "SELECT body FROM events WHERE seq = ?", (to_seq,)
        ).fetchone()
        now = self._clock.now()
        gap = {
            "schema_version": SCHEMA_VERSION,
            "event_type": "gap",
            "event_id": self._new_id(),
            "time": rfc3339(now),
            "dropped": {
                "from_seq": from_seq,
                "to_seq": to_seq,
                "count": to_seq - from_seq + 1,
                "last_hash": json.loads(last_body)["hash"],
            },
        }
        seq = self._head_seq + 1
        body, digest = seal(gap, instance_id=self.instance_id, seq=seq, prev_hash=self._head_hash)
        with self._transaction():
            deleted = self._delete_through(to_seq)
            self._db.execute("UPDATE cursors SET seq = ? WHERE seq < ?", (to_seq, to_seq))
            self._db.execute(_INSERT, (seq, gap["event_id"], now.timestamp(), len(body), body))
        self._deleted(deleted)
        self._metrics.outbox_dropped.inc(dropped)
        self._cursors = {name: max(at, to_seq) for name, at in self._cursors.items()}
        self._floor = min(self._cursors.values())
        self._pruned = to_seq
        self._sealed(seq, digest, len(body))

    def _prune(self, limit: int | None = None) -> int:
        """Delete up to ``limit`` (None: all) rows every sink has; returns how many such
        rows are left."""
        through = self._floor if limit is None else min(self._floor, self._pruned + limit)
        if through <= self._pruned:
            return 0
        with self._transaction():
            deleted = self._delete_through(through)
        self._deleted(deleted)
        self._pruned = through
        self._update_gauges()
        return self._floor - through

    def _delete_through(self, seq: int) -> tuple[int, int]:
        """Inside a transaction: delete the rows up to ``seq`` and record the head in
        meta (it survives there when no row is left); returns (rows, bytes) deleted, for
        the caller to count once the transaction committed."""
        count, size = self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM events WHERE seq <= ?", (seq,)
        ).fetchone()
        self._db.execute("DELETE FROM events WHERE seq <= ?", (seq,))
        self._db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [("head_seq", str(self._head_seq)), ("head_hash", self._head_hash)],
        )
        return count, size

    def _deleted(self, counted: tuple[int, int]) -> None:
        self._count -= counted[0]
        self._bytes -= counted[1]

    def _restore(self, sinks: list[str]) -> None:
        db = self._db
        with self._transaction():
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            owner = meta.get("instance_id")
            if owner is None:
                db.execute("INSERT INTO meta VALUES ('instance_id', ?)", (self.instance_id,))
            elif owner != self.instance_id:
                raise ValueError(
                    f"{self._path} holds the chain of instance {owner!r}, not "
                    f"{self.instance_id!r}: give each instance its own outbox"
                )
            last = db.execute("SELECT seq, body FROM events ORDER BY seq DESC LIMIT 1").fetchone()
            if last is not None:
                self._head_seq, self._head_hash = last[0], json.loads(last[1])["hash"]
            else:
                self._head_seq = int(meta.get("head_seq", 0))
                self._head_hash = meta.get("head_hash", GENESIS_HASH)
            self._count, self._bytes, oldest = db.execute(
                "SELECT count(*), coalesce(sum(size), 0), min(seq) FROM events"
            ).fetchone()
            start = self._head_seq if oldest is None else oldest - 1
            known = dict(db.execute("SELECT sink, seq FROM cursors").fetchall())
            for name in known.keys() - set(sinks):
                db.execute("DELETE FROM cursors WHERE sink = ?", (name,))
            for name in sinks:
                if name not in known:
                    db.execute("INSERT INTO cursors VALUES (?, ?)", (name, start))
            self._cursors = {name: known.get(name, start) for name in sinks}
            floor = max(start, min(self._cursors.values()))
            deleted = self._delete_through(floor) if floor > start else (0, 0)
        self._deleted(deleted)
        self._floor = self._pruned = floor
        self._update_gauges()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            yield
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise OutboxError(f"{self._path}: write failed: {exc}") from exc
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _checkpoint(self) -> bool:
        """In a worker thread: a PASSIVE checkpoint; True when the whole WAL was copied."""
        with self._fsync_lock:
            if self._fsync_db is None:
                return True
            busy, log_frames, copied = self._fsync_db.execute(
                "PRAGMA wal_checkpoint(PASSIVE)"
            ).fetchone()
        return not busy and copied >= log_frames

    def _margin(self) -> int:
        mean = self._bytes // self._count if self._count else 0
        return min(self._max_bytes // 4, max(64 * _KIB, 16 * mean))

    def _event_time(self, value: Any) -> float:
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value).timestamp()
            except ValueError:
                pass
        return self._clock.now().timestamp()

    def _update_gauges(self) -> None:
        self._metrics.outbox_events.set(self._count)
        self._metrics.outbox_bytes.set(self._bytes)


def _connect(path: Path, *, create: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, NORMAL sync,
    no automatic checkpoint (run_fsync does them off the event loop); ``create``: the
    tables too."""
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        (mode,) = db.execute("PRAGMA journal_mode=WAL").fetchone()
        if mode != "wal":
            db.close()
            raise OutboxError(f"{path}: WAL mode unavailable (journal_mode={mode})")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA wal_autocheckpoint=0")
        # After each checkpoint that empties it, the WAL file is cut back to this size
        # (https://www.sqlite.org/pragma.html#pragma_journal_size_limit).
        db.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT_BYTES}")
        # Debian's SQLite zeroes freed pages (SQLITE_SECURE_DELETE): 3x the cost of
        # deleting delivered rows. FAST zeroes only within pages written anyway.
        db.execute("PRAGMA secure_delete=FAST")
        if create:
            db.executescript(_SCHEMA)
    except sqlite3.Error as exc:
        raise OutboxError(f"{path}: cannot open the outbox: {exc}") from exc
    return db


def _lock(path: Path) -> int:
    """An exclusive lock on ``<path>.lock`` for this process's lifetime (the kernel
    releases it when the process dies, SIGKILL included)."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise OutboxError(f"{lock_path}: cannot create the lock file: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise OutboxError(f"{path}: the outbox is in use by another process") from exc
    return fd
