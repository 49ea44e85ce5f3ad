"""Asynchronous parallel evaluation of design points: a local process pool, or Dask.

Both engines share one interface: :meth:`submit` a point under a key, :meth:`poll` for the
:class:`Outcome` of whatever finished (so the sweep driver can ask for new points while others
run), :meth:`close`.

Every evaluation runs in a worker *subprocess* that leads its own process group. A hung
simulation is ended by killing that whole group (the worker and any Verilator or simulator
child it started) once the per-evaluation timeout passes; the result is recorded ``timeout``
and a fresh worker takes its place. An exception in the evaluator (a failed Verilator build, a
simulation mismatch, anything) comes back as ``failed`` with its traceback and log path. A
worker that dies (segfault, OOM kill) is ``failed`` too, and is replaced.

With Dask (``DaskEngine``), each task runs the same worker subprocess inside the Dask worker,
so timeouts behave the same; tasks are pure functions of their inputs, so the scheduler may run
a task again when the worker that held it is lost (``retries``).

Workers talk to the parent through their stdin/stdout with length-prefixed cloudpickle frames;
the worker moves its own ``print`` output to stderr (or its log file) to keep the pipe clean.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import cloudpickle

from hwloop.errors import InputError, SimulationTimeout

#: ``evaluator(space, point, *, fidelity, seed)`` → a result with ``to_dict()`` (or a dict).
Evaluator = Callable[..., Any]

_HEADER = struct.Struct("<Q")


@dataclass
class Outcome:
    """What became of one submitted evaluation."""

    key: str
    point: dict[str, Any]
    status: str  # "done" (the evaluator returned), "failed" or "timeout"
    result: dict[str, Any] | None = None  # the evaluator's result as a dict when "done"
    error: str | None = None  # traceback or reason when failed / timeout
    log_path: str | None = None
    wall_s: float = 0.0  # time in the worker
    queued_s: float = 0.0  # time between submit and start
    started_at: float = 0.0
    worker: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Job:
    key: str
    point: dict[str, Any]
    submitted_at: float = field(default_factory=time.time)


# -- the worker subprocess ----------------------------------------------------------------

def _write_frame(stream: BinaryIO, obj: object) -> None:
    data = cloudpickle.dumps(obj)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(stream: BinaryIO) -> Any:
    header = _read_exact(stream, _HEADER.size)
    if header is None:
        raise EOFError
    body = _read_exact(stream, _HEADER.unpack(header)[0])
    if body is None:
        raise EOFError
    return cloudpickle.loads(body)


def _watch_parent(parent: int) -> None:
    """End this worker's process group when the process that started it is gone (kill -9)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os.killpg(0, signal.SIGKILL)


def _reply(stream: BinaryIO, obj: object) -> None:
    """Write a reply to the driver; if it is gone (``kill -9`` closed the pipe), end this
    worker's process group as :func:`_watch_parent` would, without a traceback on the
    terminal the driver shared with it."""
    try:
        _write_frame(stream, obj)
    except OSError:  # BrokenPipeError, or the pipe otherwise unusable
        os.killpg(0, signal.SIGKILL)


def _as_dict(result: Any) -> dict[str, Any]:
    if hasattr(result, "to_dict"):
        return dict(result.to_dict())
    if isinstance(result, dict):
        return dict(result)
    raise TypeError(f"the evaluator returned {type(result).__name__}, not a result with to_dict()")


def _worker_main() -> None:
    """The loop of a worker subprocess: read a job, evaluate it, write the outcome."""
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # the evaluator's prints go to stderr, never into the reply pipe
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), line_buffering=True)
    # the driver's import path (like multiprocessing's spawn), so its evaluator imports here
    for entry in reversed(json.loads(os.environ.get("HWLOOP_ENGINE_SYSPATH", "[]"))):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    parent = int(os.environ.get("HWLOOP_ENGINE_PARENT", os.getppid()))
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    evaluator = space = None
    while True:
        try:
            message = _read_frame(requests)
        except EOFError:
            return
        if message[0] == "setup":
            try:
                evaluator, space = cloudpickle.loads(message[1])
            except BaseException as exc:  # e.g. the evaluator's module is not importable here
                text = "".join(traceback.format_exception(exc)).strip()
                _reply(replies, ("setup-failed", text))
                return
            _reply(replies, ("ready",))
            continue
        _, point, fidelity, seed = message
        start = time.time()
        try:
            assert evaluator is not None
            result = _as_dict(evaluator(space, point, fidelity=fidelity, seed=seed))
            reply: tuple[Any, ...] = ("done", result, None, None)
        except SimulationTimeout as exc:
            reply = ("timeout", None, f"{type(exc).__name__}: {exc}",
                     _log_path_of(exc))
        except BaseException as exc:  # every failure is a result; the sweep goes on
            text = "".join(traceback.format_exception(exc)).strip()
            reply = ("failed", None, text, _log_path_of(exc))
        _reply(replies, (*reply, start, time.time() - start))


def _log_path_of(exc: BaseException) -> str | None:
    path = getattr(exc, "log_path", None)
    return str(path) if path else None


#: Seconds a worker subprocess may take to start and import the evaluator.
STARTUP_TIMEOUT = 300.0


class WorkerStartError(RuntimeError):
    """A worker subprocess could not start (or could not load the evaluator)."""


class _Worker:
    """One worker subprocess (its own session, so its whole process group can be killed)."""

    def __init__(self, name: str, setup: bytes, log_path: Path | None):
        self.name = name
        self._log = open(log_path, "ab") if log_path is not None else None  # noqa: SIM115
        env = dict(os.environ)
        env["HWLOOP_ENGINE_PARENT"] = str(os.getpid())
        env["HWLOOP_ENGINE_SYSPATH"] = json.dumps([os.path.abspath(p or os.curdir)
                                                   for p in sys.path])
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from hwloop.search.engine import _worker_main; _worker_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log if self._log is not None else None,
            start_new_session=True, env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: BinaryIO = self.proc.stdin
        self.stdout: BinaryIO = self.proc.stdout
        self.job: _Job | None = None
        self.started = 0.0
        try:
            self.stdin.write(setup)
            self.stdin.flush()
            # Wait until it has imported the evaluator: start-up is not part of any timeout.
            readable, _, _ = select.select([self.stdout], [], [], STARTUP_TIMEOUT)
            reply = _read_frame(self.stdout) if readable else ("setup-failed", (
                f"worker process did not start within {STARTUP_TIMEOUT:g} s"))
        except (EOFError, OSError) as exc:
            reply = ("setup-failed", self.exit_reason() if isinstance(exc, EOFError)
                     else repr(exc))
        if reply[0] != "ready":
            self.kill()
            raise WorkerStartError(f"worker process could not start: {reply[1]}")

    def send(self, job: _Job, fidelity: str, seed: int) -> None:
        self.job = job
        self.started = time.time()
        _write_frame(self.stdin, ("eval", job.point, fidelity, seed))

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.kill()
        self.proc.wait()
        for stream in (self.stdin, self.stdout):
            with contextlib.suppress(Exception):
                stream.close()
        if self._log is not None:
            self._log.close()

    def exit_reason(self) -> str:
        code = self.proc.wait()
        if code < 0:
            return f"worker process killed by signal {signal.Signals(-code).name}"
        return f"worker process exited with code {code}"


class LocalEngine:
    """A pool of ``workers`` worker subprocesses on this machine."""

    def __init__(
        self,
        *,
        evaluator: Evaluator,
        space: Any,
        fidelity: str,
        seed: int,
        workers: int | None = None,
        timeout: float | None = None,
        log_dir: Path | None = None,
    ):
        self.workers = workers if workers is not None else default_workers()
        if self.workers < 1:
            raise InputError(f"--workers must be at least 1, not {self.workers}")
        self.timeout = timeout
        self.fidelity = fidelity
        self.seed = seed
        self.log_dir = log_dir
        # the evaluator and space travel as bytes inside the frame, so that a worker that
        # cannot unpickle them (a module missing there) can still say so
        data = cloudpickle.dumps(("setup", cloudpickle.dumps((evaluator, space))))
        self._setup = _HEADER.pack(len(data)) + data
        self._failed: list[Outcome] = []
        self._idle: list[_Worker] = []
        self._busy: list[_Worker] = []
        self._queue: deque[_Job] = deque()
        self._count = 0

    # -- interface -------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self.workers

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._busy) + len(self._failed)

    def submit(self, key: str, point: dict[str, Any]) -> None:
        self._queue.append(_Job(key, dict(point)))
        self._dispatch()

    def poll(self, wait: float = 0.0) -> list[Outcome]:
        """Outcomes finished by now, waiting up to ``wait`` seconds for the first one."""
        outcomes = self._reap_timeouts()
        self._dispatch()
        outcomes += self._failed
        self._failed = []
        if not self._busy:
            return outcomes
        limit = time.time() + (0.0 if outcomes else wait)
        while True:
            timeout = max(0.0, limit - time.time())
            if self.timeout is not None:
                first_deadline = min(w.started for w in self._busy) + self.timeout
                timeout = max(0.0, min(timeout, first_deadline - time.time()))
            readable, _, _ = select.select([w.stdout for w in self._busy], [], [], timeout)
            for worker in [w for w in self._busy if w.stdout in readable]:
                outcomes.append(self._receive(worker))
            outcomes += self._reap_timeouts()
            self._dispatch()
            outcomes += self._failed
            self._failed = []
            if outcomes or time.time() >= limit or not self._busy:
                return outcomes

    def close(self) -> None:
        for worker in self._idle + self._busy:
            worker.kill()
        self._idle.clear()
        self._busy.clear()
        self._queue.clear()

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        self._count += 1
        name = f"local-{self._count}"
        log = self.log_dir / f"worker-{self._count}.log" if self.log_dir is not None else None
        return _Worker(name, self._setup, log)

    def _dispatch(self) -> None:
        while self._queue and len(self._busy) < self.workers:
            job = self._queue.popleft()
            try:
                worker = self._idle.pop() if self._idle else self._spawn()
            except WorkerStartError as exc:
                self._failed.append(Outcome(job.key, job.point, "failed", error=str(exc),
                                            queued_s=time.time() - job.submitted_at))
                continue
            try:
                worker.send(job, self.fidelity, self.seed)
            except (BrokenPipeError, OSError):  # it died while idle: replace it, keep the job
                worker.kill()
                self._queue.appendleft(job)
                continue
            self._busy.append(worker)

    def _receive(self, worker: _Worker) -> Outcome:
        job = worker.job
        assert job is not None
        self._busy.remove(worker)
        try:
            status, result, error, log_path, started, wall = _read_frame(worker.stdout)
        except (EOFError, OSError, ValueError) as exc:
            reason = worker.exit_reason() if isinstance(exc, EOFError) else repr(exc)
            worker.kill()
            return Outcome(job.key, job.point, "failed", error=reason,
                           wall_s=time.time() - worker.started, started_at=worker.started,
                           queued_s=worker.started - job.submitted_at, worker=worker.name)
        worker.job = None
        self._idle.append(worker)
        return Outcome(job.key, job.point, status, result=result, error=error, log_path=log_path,
                       wall_s=wall, started_at=started, queued_s=started - job.submitted_at,
                       worker=worker.name)

    def _reap_timeouts(self) -> list[Outcome]:
        if self.timeout is None:
            return []
        now = time.time()
        outcomes = []
        for worker in [w for w in self._busy if now - w.started > self.timeout]:
            job = worker.job
            assert job is not None
            self._busy.remove(worker)
            worker.kill()
            outcomes.append(Outcome(
                job.key, job.point, "timeout",
                error=f"no result after {self.timeout:g} s: worker and its children killed",
                wall_s=now - worker.started, started_at=worker.started,
                queued_s=worker.started - job.submitted_at, worker=worker.name))
        return outcomes


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# -- Dask ---------------------------------------------------------------------------------

_DASK_LOCAL: dict[int, tuple[tuple[Any, ...], LocalEngine]] = {}
_DASK_LOCK = threading.Lock()


def _dask_evaluate(evaluator: Evaluator, space: Any, key: str, point: dict[str, Any],
                   fidelity: str, seed: int, timeout: float | None) -> dict[str, Any]:
    """A Dask task: evaluate one point in this Dask worker's worker subprocess.

    Pure in its inputs (the same point gives the same result), so Dask may rerun it when the
    worker holding it is lost.
    """
    name = f"{getattr(evaluator, '__module__', '')}.{getattr(evaluator, '__qualname__', '')}"
    # the space by what the evaluation reads of it, not by id(): a later sweep's space may
    # get the address of a freed one, and its worker would evaluate the old space
    signature = (name, space.hash, space.fidelity, tuple(w.path for w in space.workloads),
                 fidelity, seed, timeout)
    thread = threading.get_ident()
    with _DASK_LOCK:  # one worker subprocess per Dask worker thread, for the latest sweep
        cached = _DASK_LOCAL.get(thread)
        if cached is not None and cached[0] == signature:
            engine = cached[1]
        else:
            if cached is not None:
                cached[1].close()
            engine = LocalEngine(evaluator=evaluator, space=space, fidelity=fidelity, seed=seed,
                                 workers=1, timeout=timeout)
            _DASK_LOCAL[thread] = (signature, engine)
    engine.submit(key, point)
    while True:
        outcomes = engine.poll(wait=1.0)
        if outcomes:
            outcome = outcomes[0]
            break
    try:
        from distributed import get_worker
        outcome.worker = str(get_worker().address)
    except (ImportError, ValueError):
        pass
    return outcome.to_dict()


def check_address(address: str) -> None:
    """An address Dask's client can try to connect to, or a one-line :class:`InputError`.

    ``Client`` refuses the others (no port, a protocol whose backend is missing, TLS without
    certificates) in its constructor with a traceback, and prints another one when the
    half-made client is collected, 10 s later."""
    import warnings

    from distributed.comm.addressing import parse_address
    from distributed.comm.registry import get_backend
    from distributed.security import Security

    def bad(why: str) -> InputError:
        return InputError(f"--scheduler {address}: {why}")

    try:
        scheme, location = parse_address(address, strict=True)
        backend = get_backend(scheme)
    except ValueError as exc:
        raise bad(f"not a Dask address ({exc})") from None
    try:
        with warnings.catch_warnings():  # ucx warns on stderr, over several lines
            warnings.simplefilter("ignore")
            backend.get_connector()
    except (TypeError, ImportError):
        raise bad(f"Dask cannot connect by protocol {scheme} here (its backend is not "
                  f"installed)") from None
    try:
        backend.get_address_host(location)  # tcp/tls: host and port; inproc: this process
    except ValueError as exc:
        why = ("an inproc scheduler is reachable from its own process only"
               if scheme == "inproc" else str(exc))
        raise bad(f"not a Dask address ({why})") from None
    if scheme == "tls":
        try:
            context = Security().get_connection_args("client")["ssl_context"]
        except (OSError, ValueError) as exc:  # a certificate file missing or malformed
            raise bad(f"TLS configuration: {exc}") from None
        if context is None:
            raise bad("TLS needs a CA file and a client certificate in the Dask configuration "
                      "(distributed.comm.tls.ca-file, distributed.comm.tls.client.cert)")


class _LostSchedulerFilter(logging.Filter):
    """Drops what Dask's client logs about a lost scheduler, with tracebacks (its reconnection
    giving up or cancelled by close(), a send on the closed connection): the sweep says it in
    one line instead."""

    LOGGERS = ("distributed.client", "distributed.batched")
    MESSAGES = ("Failed to reconnect to scheduler", "Batched Comm Closed")

    def __init__(self, engine: DaskEngine):
        super().__init__()
        self.engine = engine

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.engine._gone or record.getMessage().startswith(self.MESSAGES))


class DaskEngine:
    """The same interface on a Dask distributed cluster (``tcp://host:port``)."""

    def __init__(
        self,
        address: str,
        *,
        evaluator: Evaluator,
        space: Any,
        fidelity: str,
        seed: int,
        timeout: float | None = None,
        connect_timeout: float = 5.0,
        retries: int = 2,
    ):
        from distributed import Client

        check_address(address)
        self.address = address
        self._gone = False
        try:
            self.client = Client(address, timeout=connect_timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"--scheduler {address}: cannot connect ({message})") from None
        self.evaluator = evaluator
        self.fidelity = fidelity
        self.seed = seed
        self.timeout = timeout
        self.retries = retries
        # The space goes with each task (about 1 KB pickled), not scattered to the workers
        # once: with every worker that held it gone (restarted, their batch jobs ended) the
        # cluster would cancel each task of the sweep, however many new workers joined.
        self._space = space
        try:
            self.client.wait_for_workers(1, timeout=connect_timeout)
        except TimeoutError:
            self.client.close()
            raise InputError(f"--scheduler {address}: the cluster has no workers (start some: "
                             f"dask worker {address})") from None
        except BaseException:
            self.client.close()
            raise
        self._futures: dict[Any, _Job] = {}
        self._quiet = _LostSchedulerFilter(self)
        for name in self._quiet.LOGGERS:
            logging.getLogger(name).addFilter(self._quiet)

    @property
    def capacity(self) -> int:
        try:
            threads = self.client.nthreads()
        except OSError:  # CommClosedError: the scheduler is gone
            raise self._lost() from None
        return max(1, sum(threads.values()))

    def _lost(self, *, cancelled: bool = False) -> InputError:
        self._gone = True
        what = "lost the connection to the scheduler"
        if cancelled and self.client.status == "running":  # another client, or a restart
            what = "the scheduler cancelled the sweep's evaluations"
        return InputError(f"--scheduler {self.address}: {what}; the results so far are kept: "
                          f"resume when it is back")

    @property
    def pending(self) -> int:
        return len(self._futures)

    def submit(self, key: str, point: dict[str, Any]) -> None:
        future = self.client.submit(
            _dask_evaluate, self.evaluator, self._space, key, dict(point), self.fidelity,
            self.seed, self.timeout, key=f"hwloop-eval-{key}-{uuid.uuid4().hex[:8]}",
            pure=False, retries=self.retries,
        )
        self._futures[future] = _Job(key, dict(point))

    def poll(self, wait: float = 0.0) -> list[Outcome]:
        from distributed import wait as dask_wait
        from distributed.utils import CancelledError

        if not self._futures:
            return []
        # the client cancels every future when it loses the scheduler (wait raises then)
        with contextlib.suppress(TimeoutError, CancelledError), self.client.as_current():
            dask_wait(list(self._futures), timeout=max(wait, 0.01), return_when="FIRST_COMPLETED")
        if any(f.cancelled() for f in self._futures):
            # only close() cancels: this is no evaluation that failed, and no row to store
            raise self._lost(cancelled=True)
        outcomes = []
        for future in [f for f in self._futures if f.done()]:
            job = self._futures.pop(future)
            status = future.status
            if status == "cancelled":  # the connection was lost just now
                raise self._lost(cancelled=True)
            try:
                data = future.result() if status == "finished" else None
                exc = future.exception() if status == "error" else None
            except (OSError, CancelledError):  # the scheduler died while they were fetched
                raise self._lost() from None
            if data is not None:
                data["queued_s"] = max(0.0, data.get("started_at", 0.0) - job.submitted_at)
                outcomes.append(Outcome(**data))
            else:
                reason = (f"{type(exc).__name__}: {exc}" if exc is not None
                          else f"Dask task {status}")
                outcomes.append(Outcome(job.key, job.point, "failed", error=reason))
        return outcomes

    def close(self) -> None:
        for future in self._futures:
            future.cancel()
        self._futures.clear()
        try:
            self.client.close()
        finally:
            for name in self._quiet.LOGGERS:
                logging.getLogger(name).removeFilter(self._quiet)

    def __enter__(self) -> DaskEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_engine(
    *,
    evaluator: Evaluator,
    space: Any,
    fidelity: str,
    seed: int,
    workers: int | None = None,
    scheduler: str | None = None,
    timeout: float | None = None,
    log_dir: Path | None = None,
) -> LocalEngine | DaskEngine:
    """The local pool, or a Dask cluster when ``scheduler`` is an address."""
    if scheduler:
        return DaskEngine(scheduler, evaluator=evaluator, space=space, fidelity=fidelity,
                          seed=seed, timeout=timeout)
    return LocalEngine(evaluator=evaluator, space=space, fidelity=fidelity, seed=seed,
                       workers=workers, timeout=timeout, log_dir=log_dir)
