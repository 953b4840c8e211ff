"""One `pendo-datasync sync` at a time per Dagster instance, and recovery from one that was killed.

Two syncs started together would plan the same pending work from the warehouse and launch every run
twice (harmlessly, since each run rechecks the ledger, but for nothing). So a sync holds an exclusive
lock on a file in DAGSTER_HOME; a second one waits, then finds nothing left to do.

A sync killed mid-run (SIGKILL, OOM, power cut) leaves its run STARTED and its slot in the warehouse
pool claimed, which would block every later run. The next sync knows from the lock file that the last one
did not finish; holding the lock, any sync run still unfinished on this host belongs to a dead process: it
is marked failed and its slot freed, and its days, never committed to the warehouse's ledger, are simply
pending again. A transaction such a run left open in
Snowflake (which keeps it, and its locks, after the process is gone) is aborted by the sync too.
"""

from __future__ import annotations

import fcntl
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from dataclasses import dataclass
from typing import IO, Callable, Iterator

import dagster as dg

LOCK_FILE = "pendo-datasync-sync.lock"
FINISHED = "finished"
SYNC_TRIGGER = "pendo-datasync sync"
TRIGGER_TAG = "pendo/trigger"
HOST_TAG = "pendo/sync_host"
PID_TAG = "pendo/sync_pid"
UNFINISHED = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def sync_run_tags() -> dict[str, str]:
    return {TRIGGER_TAG: SYNC_TRIGGER, HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


@dataclass(frozen=True)
class PreviousSync:
    """Whether the last sync of this instance finished (or none ran): if not, it was killed, and may have left runs
    that read as running, holding their pool slots, and (Snowflake) transactions open."""

    finished: bool


@contextmanager
def exclusive_sync(home: Path, say: Callable[[str], None] = print) -> Iterator[PreviousSync]:
    """Hold the instance's sync lock. The lock file holds the holder's pid while it runs, and FINISHED once a sync
    ends without an error, so the next one knows whether it has anything to recover."""
    with open(home / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            say(f"another pendo-datasync sync holds {lock.name} (pid {holder}); waiting for it to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        previous = lock.read().strip()
        _write(lock, str(os.getpid()))
        try:
            yield PreviousSync(finished=previous in ("", FINISHED))
            _write(lock, FINISHED)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write(lock: IO[str], text: str) -> None:
    lock.seek(0)
    lock.truncate()
    lock.write(text)
    lock.flush()


def run_ended(instance: dg.DagsterInstance, run_id: str) -> bool:
    """A run this instance knows, which is no longer queued or running: a transaction it left open is abandoned."""
    run = instance.get_run_by_id(run_id)
    return run is not None and run.status not in UNFINISHED


def fail_orphaned_sync_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark this host's unfinished sync runs failed and free their pool slots; call only holding the lock."""
    host = socket.gethostname()
    orphans = instance.get_runs(dg.RunsFilter(statuses=UNFINISHED, tags={TRIGGER_TAG: SYNC_TRIGGER, HOST_TAG: host}))
    messages = []
    for run in orphans:
        message = (f"run {run.run_id} of {SYNC_TRIGGER} (pid {run.tags.get(PID_TAG, '?')} on {host}) ended without "
                   "finishing; its days are pending again and this sync loads them")
        instance.report_run_failed(run, message)
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        messages.append(message)
    return messages
