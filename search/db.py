"""The results database of design-space sweeps (SQLite in WAL mode).

One database holds the evaluations of one design space (its name and hash are stamped in
``meta`` when the database is made; a database from another space is refused). Two tables:

- ``evaluations``: one row per evaluated configuration and fidelity (``params_hash`` +
  ``fidelity`` is unique): parameters, metrics, objective, feasibility, status, log path, wall
  time, tool versions, seed. Evaluating a configuration that is already there reuses its row.
- ``trials``: the order in which each sweep (method, seed, fidelity) was told its results; it
  makes ``--resume`` and the per-method convergence plots exact even when sweeps share rows.

The sweep driver is the only writer; every result is one committed transaction, so a driver
killed at any moment (even ``kill -9``) leaves only whole rows behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwloop import __version__
from hwloop.errors import InputError
from hwloop.paths import check_folder_path

SCHEMA_VERSION = 1

STATUSES = ("ok", "infeasible", "failed", "timeout")
#: Statuses of rows a later evaluation may replace (``hwloop sweep --retry-failed``).
RETRIED_STATUSES = ("failed", "timeout")

#: The columns every flat record (``hwloop db export``) starts with, even with no rows.
FLAT_COLUMNS = ("id", "method", "fidelity", "status", "feasible", "infeasible_kind", "objective",
                "params_hash", "seed", "wall_s", "finished_at", "log_path", "error")

_COLUMNS = ("space_name", "space_hash", "method", "params", "params_hash", "fidelity", "status",
            "feasible", "infeasible_kind", "objective", "metrics", "result", "error", "log_path",
            "wall_s", "queued_s", "started_at", "finished_at", "tool_versions", "hwloop_version",
            "seed")
# A failed or timed-out row is replaced in place (same id: the trials that told it stay valid);
# any other stored row is kept.
_RECORD_SQL = (
    f"INSERT INTO evaluations ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    f"ON CONFLICT (params_hash, fidelity) DO UPDATE SET "
    f"{', '.join(f'{c} = excluded.{c}' for c in _COLUMNS)} "
    f"WHERE evaluations.status IN ({', '.join(repr(s) for s in RETRIED_STATUSES)})"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sweeps (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    method      TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    fidelity    TEXT NOT NULL,
    budget      INTEGER NOT NULL,
    started_at  REAL NOT NULL,
    options     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS evaluations (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    space_name      TEXT NOT NULL,
    space_hash      TEXT NOT NULL,
    method          TEXT NOT NULL,
    params          TEXT NOT NULL,
    params_hash     TEXT NOT NULL,
    fidelity        TEXT NOT NULL,
    status          TEXT NOT NULL,
    feasible        INTEGER NOT NULL,
    infeasible_kind TEXT,
    objective       REAL,
    metrics         TEXT NOT NULL,
    result          TEXT NOT NULL,
    error           TEXT,
    log_path        TEXT,
    wall_s          REAL,
    queued_s        REAL,
    started_at      REAL,
    finished_at     REAL NOT NULL,
    tool_versions   TEXT NOT NULL,
    hwloop_version  TEXT NOT NULL,
    seed            INTEGER NOT NULL,
    UNIQUE (params_hash, fidelity)
);
CREATE TABLE IF NOT EXISTS trials (
    sweep_id      INTEGER NOT NULL REFERENCES sweeps(id),
    seq           INTEGER NOT NULL,
    evaluation_id INTEGER NOT NULL REFERENCES evaluations(id),
    reused        INTEGER NOT NULL,
    told_at       REAL NOT NULL,
    PRIMARY KEY (sweep_id, seq)
);
"""


def _plain(value: Any) -> Any:
    """numpy scalars and other number-likes as plain JSON values."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} {value!r} in the results DB")


def canonical_params(point: Mapping[str, Any]) -> str:
    """A point as canonical JSON (sorted keys, plain values): what ``params_hash`` hashes."""
    return json.dumps(dict(point), sort_keys=True, default=_plain, separators=(",", ":"))


def params_hash(point: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_params(point).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Row:
    """One stored evaluation."""

    id: int
    method: str
    params: dict[str, Any]
    params_hash: str
    fidelity: str
    status: str
    feasible: bool
    infeasible_kind: str | None
    objective: float | None
    metrics: dict[str, float]
    result: dict[str, Any]
    error: str | None
    log_path: str | None
    wall_s: float | None
    finished_at: float
    seed: int
    tool_versions: dict[str, str]

    @classmethod
    def from_sql(cls, row: sqlite3.Row, *, source: str | Path = "results DB") -> Row:
        """Decode a stored row; a damaged one (edited by hand, written by a buggy tool) is a
        one-line :class:`InputError` naming ``source`` (the DB) and the row."""
        where = f"{source}: evaluation {row['id']}"
        metrics = _json_object(row, "metrics", where)
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InputError(f"{where}: metrics.{key} is not a number: {value!r}")
        objective = row["objective"]
        if objective is not None and not isinstance(objective, int | float):
            raise InputError(f"{where}: objective is not a number: {objective!r}")
        if objective is not None and not math.isfinite(objective):
            raise InputError(f"{where}: objective is not a finite number: {objective!r}")
        # the plain columns, as their schema types (SQLite stores what it is given)
        for column, kinds, what, optional in (
                ("method", str, "text", False), ("params_hash", str, "text", False),
                ("fidelity", str, "text", False), ("status", str, "text", False),
                ("infeasible_kind", str, "text", True), ("error", str, "text", True),
                ("log_path", str, "text", True), ("wall_s", int | float, "a number", True),
                ("finished_at", int | float, "a number", False),
                ("seed", int, "an integer", False)):
            value = row[column]
            if not (isinstance(value, kinds) or (optional and value is None)):
                raise InputError(f"{where}: {column} is not {what}: {value!r}")
        return cls(
            id=row["id"], method=row["method"], params=_json_object(row, "params", where),
            params_hash=row["params_hash"], fidelity=row["fidelity"], status=row["status"],
            feasible=bool(row["feasible"]), infeasible_kind=row["infeasible_kind"],
            objective=objective, metrics=metrics, result=_json_object(row, "result", where),
            error=row["error"], log_path=row["log_path"], wall_s=row["wall_s"],
            finished_at=row["finished_at"], seed=row["seed"],
            tool_versions=_json_object(row, "tool_versions", where),
        )


def _json_object(row: sqlite3.Row, column: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(row[column])
    except (TypeError, ValueError):  # NULL, bytes that are not UTF-8, not JSON
        raise InputError(f"{where}: {column} is not JSON") from None
    if not isinstance(value, dict):
        raise InputError(f"{where}: {column} is not a JSON object: {row[column][:40]!r}")
    return value


def _check_meta(path: Path, meta: Mapping[str, str]) -> None:
    """A DB whose ``meta`` this hwloop can trust: its schema, and the space it belongs to."""
    damaged = f"{path}: damaged results database"
    if not meta:
        raise InputError(f"{damaged}: its meta table is empty")
    for key, value in meta.items():
        if not isinstance(value, str):  # (a blob: SQLite stores what it is given)
            raise InputError(f"{damaged}: its meta {key} is not text: {value!r:.40}")
    version = meta.get("schema_version")
    if version is None:
        raise InputError(f"{damaged}: its meta table has no schema_version")
    try:
        number = int(version)
    except ValueError:
        raise InputError(f"{damaged}: schema_version {version!r} is not a number") from None
    if number > SCHEMA_VERSION:
        raise InputError(f"{path}: written by a newer hwloop (schema {number}; this hwloop reads "
                         f"schema {SCHEMA_VERSION}): upgrade hwloop to use it")
    if number < 1:
        raise InputError(f"{damaged}: schema_version {version!r} is not a version")
    for key in ("space_name", "space_hash"):
        if not meta.get(key):
            raise InputError(f"{damaged}: its meta table has no {key}")


#: Every table and its columns (what the reads and writes name): a DB missing one is damaged.
_TABLES = {
    "meta": ("key", "value"),
    "sweeps": ("id", "method", "seed", "fidelity", "budget", "started_at", "options"),
    "evaluations": ("id", *_COLUMNS),
    "trials": ("sweep_id", "seq", "evaluation_id", "reused", "told_at"),
}


def _check_tables(path: Path, db: sqlite3.Connection) -> None:
    """A DB whose tables all have their columns (else best, report, --resume fail on the first
    read of a missing one)."""
    damaged = f"{path}: damaged results database"
    for table, columns in _TABLES.items():
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        if not have:
            raise InputError(f"{damaged}: it has no table {table!r}")
        for column in columns:
            if column not in have:
                raise InputError(f"{damaged}: table {table} has no column {column!r}")


def _not_writable_or_not_a_db(path: Path, exc: sqlite3.DatabaseError) -> InputError:
    """The error for a DB a sweep cannot open: one it may not write (its folder read-only:
    SQLite cannot make the file, or its journal beside it; a full disk; an I/O error), or not
    a DB at all."""
    if isinstance(exc, sqlite3.OperationalError):
        return InputError(f"{path}: cannot open the results database for writing ({exc})")
    return InputError(f"{path}: not a hwloop results database ({exc})")


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


@dataclass(frozen=True)
class Sweep:
    id: int
    method: str
    seed: int
    fidelity: str
    budget: int


class ResultsDB:
    """A sweep results database bound to one design space.

    ``ResultsDB.open(path, space_name=, space_hash=)`` creates the file if needed and refuses
    (one-line :class:`InputError`, nothing written) a database stamped with another space.
    ``ResultsDB.open_existing(path)`` opens a database of any space for reading.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection):
        self.path = path
        self._db = connection
        # SQLite goes on writing to a file deleted or moved away (its folder removed): the
        # results written after would be lost without a word, so writes check the path first
        self._identity = _file_identity(path)

    # -- opening -------------------------------------------------------------------------
    @staticmethod
    def _connect(path: Path, *, immutable: bool = False) -> sqlite3.Connection:
        """``immutable``: read the file as it is, without the WAL's ``-shm`` file beside it
        (SQLite needs to write that file to read a WAL database, even read-only)."""
        if immutable:
            uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?immutable=1"
            db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
        else:
            db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout = 30000")
        return db

    @staticmethod
    def _check_readable(path: Path) -> None:
        """SQLite says "unable to open database file" of a file it may not read: name why."""
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise InputError(f"{path}: cannot read the results database: "
                             f"{exc.strerror or exc}") from None

    @classmethod
    def _check_is_db(cls, path: Path) -> sqlite3.Connection:
        cls._check_readable(path)
        try:
            try:
                db = cls._connect(path)
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            except sqlite3.OperationalError as exc:
                # A DB in a folder this user cannot write in (another user's, read-only
                # media): SQLite cannot make the -shm file it needs to read a WAL database.
                # With no -wal file beside it no writer has it open: read it as it is.
                if "readonly" not in str(exc) and "unable to open" not in str(exc) \
                        or Path(f"{path}-wal").exists():
                    raise
                db = cls._connect(path, immutable=True)
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):  # an I/O error, not a damaged file
                raise InputError(f"{path}: cannot read the results database ({exc})") from None
            raise InputError(f"{path}: not a hwloop results database ({exc})") from None
        if "meta" not in tables or "evaluations" not in tables:
            db.close()
            raise InputError(f"{path}: not a hwloop results database (no hwloop tables)")
        return db

    @classmethod
    def open(cls, path: str | Path, *, space_name: str, space_hash: str,
             objective: str = "", prices: str = "") -> ResultsDB:
        """``prices``: a hash of the area and energy tables the results are priced with (a DB
        made with it refuses other tables; one made before it was recorded takes any)."""
        path = Path(path)
        check_folder_path(path, name=str(path), parents_only=True)
        if not path.exists() and not path.parent.exists():
            raise InputError(f"{path}: folder {path.parent} does not exist")
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not a results database")
        new = not path.exists() or path.stat().st_size == 0
        if path.exists():
            cls._check_readable(path)
        try:
            db = cls._connect(path)
        except sqlite3.DatabaseError as exc:
            raise _not_writable_or_not_a_db(path, exc) from None
        try:
            if new:
                cls._enable_wal(db)  # WAL cannot be switched on inside the schema's transaction
            # Under the write lock: another process creating this DB right now holds it until
            # its schema is committed, so this waits (busy timeout) instead of seeing no tables.
            db.execute("BEGIN IMMEDIATE")
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError as exc:
            db.close()
            raise _not_writable_or_not_a_db(path, exc) from None
        if not tables:  # a new DB, or one whose creator died before its schema was committed
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                now = str(time.time())
                for key, value in (("schema_version", str(SCHEMA_VERSION)),
                                   ("space_name", space_name), ("space_hash", space_hash),
                                   ("objective", objective), ("created_at", now),
                                   ("hwloop_version", __version__), ("prices", prices)):
                    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                               (key, value))
                db.execute("COMMIT")
                cls._enable_wal(db)
            except sqlite3.DatabaseError as exc:  # closing rolls back what was not committed
                db.close()
                raise _not_writable_or_not_a_db(path, exc) from None
            return cls(path, db)
        if "meta" not in tables or "evaluations" not in tables:
            db.execute("ROLLBACK")
            db.close()
            raise InputError(f"{path}: not a hwloop results database (no hwloop tables)")
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        db.execute("ROLLBACK")
        try:
            _check_meta(path, meta)  # before any write: a sweep must not append to such a DB
            _check_tables(path, db)
        except InputError:
            db.close()
            raise
        if meta.get("space_hash") != space_hash:
            db.close()
            if meta.get("space_name") == space_name:  # the same file, edited
                raise InputError(
                    f"{path}: results of space {space_name!r} as it was (hash "
                    f"{meta.get('space_hash')}); its parameters, budgets, objective or "
                    f"workload files have changed since (hash {space_hash}); use another --db"
                )
            raise InputError(
                f"{path}: results of space {meta.get('space_name')!r} "
                f"(hash {meta.get('space_hash')}), not of {space_name!r} (hash {space_hash}); "
                f"use another --db"
            )
        if prices and meta.get("prices") and meta["prices"] != prices:
            db.close()
            raise InputError(
                f"{path}: results priced with other area or energy tables (hash "
                f"{meta['prices']}; now {prices}): their areas and energies would mix with "
                f"new ones; use another --db")
        cls._enable_wal(db)
        return cls(path, db)

    @classmethod
    def open_existing(cls, path: str | Path) -> ResultsDB:
        path = Path(path)
        check_folder_path(path, name=str(path), parents_only=True)
        if not path.exists():
            raise InputError(f"{path}: no such results database")
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not a results database")
        db = cls._check_is_db(path)
        try:
            _check_meta(path, dict(db.execute("SELECT key, value FROM meta").fetchall()))
            _check_tables(path, db)
        except InputError:
            db.close()
            raise
        return cls(path, db)

    @staticmethod
    def _enable_wal(db: sqlite3.Connection) -> None:
        # Switching to WAL needs the file to itself, and SQLite may refuse at once (no busy
        # wait) while another process is opening it: retry for the busy timeout.
        deadline = time.monotonic() + 30
        while db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            try:
                db.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        db.execute("PRAGMA synchronous = NORMAL")

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A write SQLite refuses (a full disk, a read-only file, an I/O error, another
        writer past the busy timeout) as a one-line error: the rows committed before stay."""
        if self._identity is not None and _file_identity(self.path) != self._identity:
            raise InputError(f"{self.path}: the results database was deleted or moved away "
                             f"while the sweep ran; nothing more is written to it")
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise InputError(f"{self.path}: cannot write ({exc}): the results stored so far "
                             f"are kept; resume once it can be written") from None

    def _rollback(self) -> None:
        # SQLite rolls back by itself on some errors (a full disk): a ROLLBACK then fails and
        # hides the cause; after a COMMIT that went through (an interrupt just after) as well.
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta ----------------------------------------------------------------------------
    @property
    def meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    @property
    def space_name(self) -> str:
        return self.meta.get("space_name", "")

    @property
    def space_hash(self) -> str:
        return self.meta.get("space_hash", "")

    # -- sweeps --------------------------------------------------------------------------
    def new_sweep(self, *, method: str, seed: int, fidelity: str, budget: int,
                  options: Mapping[str, Any] | None = None) -> Sweep:
        with self._writing():
            cur = self._db.execute(
                "INSERT INTO sweeps (method, seed, fidelity, budget, started_at, options) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (method, seed, fidelity, budget, time.time(), json.dumps(dict(options or {}))),
            )
        return Sweep(int(cur.lastrowid or 0), method, seed, fidelity, budget)

    def find_sweep(self, *, method: str, seed: int, fidelity: str) -> Sweep | None:
        """The latest sweep with these settings (what ``--resume`` continues)."""
        row = self._db.execute(
            "SELECT * FROM sweeps WHERE method = ? AND seed = ? AND fidelity = ? "
            "ORDER BY id DESC LIMIT 1", (method, seed, fidelity)).fetchone()
        if row is None:
            return None
        return Sweep(row["id"], row["method"], row["seed"], row["fidelity"], row["budget"])

    def set_budget(self, sweep: Sweep, budget: int) -> Sweep:
        with self._writing():
            self._db.execute("UPDATE sweeps SET budget = ? WHERE id = ?", (budget, sweep.id))
        return Sweep(sweep.id, sweep.method, sweep.seed, sweep.fidelity, budget)

    def delete_sweep(self, sweep: Sweep) -> None:
        """Remove a sweep that told nothing (it failed before its first result)."""
        with self._writing():
            self._db.execute("DELETE FROM sweeps WHERE id = ? AND NOT EXISTS "
                             "(SELECT 1 FROM trials WHERE sweep_id = ?)", (sweep.id, sweep.id))

    def sweep_options(self, sweep: Sweep) -> dict[str, Any]:
        """The options a sweep was started with; damaged ones are a one-line InputError."""
        row = self._db.execute("SELECT * FROM sweeps WHERE id = ?", (sweep.id,)).fetchone()
        if row is None:
            return {}
        where = f"{self.path}: sweep {sweep.id}"
        options = _json_object(row, "options", where)
        warm_start = options.get("warm_start")
        if warm_start is not None and not isinstance(warm_start, str):
            raise InputError(f"{where}: options warm_start is not text: {warm_start!r}")
        return options

    def sweeps(self) -> list[Sweep]:
        return [Sweep(r["id"], r["method"], r["seed"], r["fidelity"], r["budget"])
                for r in self._db.execute("SELECT * FROM sweeps ORDER BY id")]

    # -- evaluations ---------------------------------------------------------------------
    def lookup(self, params_hash_: str, fidelity: str) -> Row | None:
        row = self._db.execute(
            "SELECT * FROM evaluations WHERE params_hash = ? AND fidelity = ?",
            (params_hash_, fidelity)).fetchone()
        return Row.from_sql(row, source=self.path) if row is not None else None

    def record(
        self,
        sweep: Sweep,
        *,
        point: Mapping[str, Any],
        result: Mapping[str, Any],
        method: str,
        seed: int,
        error: str | None = None,
        log_path: str | None = None,
        wall_s: float | None = None,
        queued_s: float | None = None,
        started_at: float | None = None,
        tool_versions: Mapping[str, str] | None = None,
    ) -> Row:
        """Store one result (a ``PointResult.to_dict()``) and tell it to ``sweep``: one commit.

        If the configuration is already stored at this fidelity, its row is kept (reused),
        unless it is failed or timed out: then this result replaces it, under the same id.
        """
        status = str(result.get("status", "failed"))
        if status not in STATUSES:
            raise ValueError(f"unknown evaluation status {status!r}")
        objective = result.get("objective")
        objective = float(objective) if objective is not None else None
        metrics = {k: float(v) for k, v in dict(result.get("metrics") or {}).items()}
        feasible = bool(result.get("feasible", status == "ok"))
        fidelity = sweep.fidelity
        h = params_hash(point)
        db = self._db
        with self._writing():
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    _RECORD_SQL,
                    (self.space_name, self.space_hash, method, canonical_params(point), h,
                     fidelity, status, int(feasible), result.get("infeasible_kind"), objective,
                     json.dumps(metrics), json.dumps(dict(result), default=_plain),
                     error if error is not None else result.get("error"),
                     log_path if log_path is not None else result.get("log_path"),
                     wall_s, queued_s, started_at, time.time(),
                     json.dumps(dict(tool_versions or {})), __version__, seed),
                )
                stored = db.execute(
                    "SELECT * FROM evaluations WHERE params_hash = ? AND fidelity = ?",
                    (h, fidelity)).fetchone()
                self._tell(sweep, stored["id"], reused=False)
                db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        return Row.from_sql(stored, source=self.path)

    def reuse(self, sweep: Sweep, row: Row) -> None:
        """Tell ``sweep`` an already stored row (no evaluation was run): one commit."""
        with self._writing():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._tell(sweep, row.id, reused=True)
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def _tell(self, sweep: Sweep, evaluation_id: int, *, reused: bool) -> None:
        seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM trials WHERE sweep_id = ?",
                               (sweep.id,)).fetchone()[0]
        self._db.execute(
            "INSERT INTO trials (sweep_id, seq, evaluation_id, reused, told_at) "
            "VALUES (?, ?, ?, ?, ?)", (sweep.id, seq, evaluation_id, int(reused), time.time()))

    def trials(self, sweep: Sweep | int) -> list[Row]:
        """The rows told to a sweep, in the order they were told."""
        sweep_id = sweep.id if isinstance(sweep, Sweep) else sweep
        return [Row.from_sql(r, source=self.path) for r in self._db.execute(
            "SELECT e.* FROM trials t JOIN evaluations e ON e.id = t.evaluation_id "
            "WHERE t.sweep_id = ? ORDER BY t.seq", (sweep_id,))]

    def rows(self, *, fidelity: str | None = None) -> list[Row]:
        if fidelity is None:
            cursor = self._db.execute("SELECT * FROM evaluations ORDER BY id")
        else:
            cursor = self._db.execute(
                "SELECT * FROM evaluations WHERE fidelity = ? ORDER BY id", (fidelity,))
        return [Row.from_sql(r, source=self.path) for r in cursor]

    def iter_flat(self) -> Iterator[dict[str, Any]]:
        """Every evaluation as one flat record: the :data:`FLAT_COLUMNS`, then parameters and
        metrics as ``param.*`` and ``metric.*`` columns."""
        for row in self.rows():
            record: dict[str, Any] = {name: getattr(row, name) for name in FLAT_COLUMNS}
            for key, value in row.params.items():
                record[f"param.{key}"] = value
            for key, value in row.metrics.items():
                record[f"metric.{key}"] = value
            yield record

    def feasible_counts(self) -> dict[str, tuple[int, int]]:
        """Per fidelity: (rows, feasible rows that compete for the best design)."""
        return {r[0]: (r[1], r[2]) for r in self._db.execute(
            "SELECT fidelity, COUNT(*), SUM(feasible = 1 AND status = 'ok' "
            "AND objective IS NOT NULL) FROM evaluations GROUP BY fidelity ORDER BY fidelity")}

    def best(self, *, fidelity: str | None = None) -> Row | None:
        """The feasible row with the lowest objective (ties: the earliest)."""
        query = ("SELECT * FROM evaluations WHERE feasible = 1 AND status = 'ok' "
                 "AND objective IS NOT NULL")
        args: tuple[Any, ...] = ()
        if fidelity is not None:
            query += " AND fidelity = ?"
            args = (fidelity,)
        row = self._db.execute(query + " ORDER BY objective, id LIMIT 1", args).fetchone()
        return Row.from_sql(row, source=self.path) if row is not None else None
