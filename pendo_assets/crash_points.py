"""Named points in a load where the crash tests kill the loading process, to prove a day is all or nothing.

Inactive unless PENDO_DATASYNC_CRASH_AT names a point, as `<point>` or `<point>@<n>` (the n-th time the
process passes it). The process then SIGKILLs itself there: no cleanup, no rollback, as on a power cut
or an OOM kill.
"""

from __future__ import annotations

import os
import signal

CRASH_AT_VARIABLE = "PENDO_DATASYNC_CRASH_AT"

MANIFEST_READ = "manifest-read"
CATALOG_WRITTEN = "catalog-written"
DAY_DELETED = "day-deleted"
BATCH_INSERTED = "batch-inserted"
FILE_INSERTED = "file-inserted"
TABLE_REPLACED = "table-replaced"
LOAD_LOG_WRITTEN = "load-log-written"
DAY_COMMITTED = "day-committed"
DEFINITIONS_DELETED = "definitions-deleted"
DEFINITIONS_COMMITTED = "definitions-committed"
# A visitor or account export: one table's earlier rows of this export deleted; the export committed.
EXPORT_CLEARED = "export-cleared"
EXPORT_APPLIED = "export-applied"

POINTS = (MANIFEST_READ, CATALOG_WRITTEN, DAY_DELETED, BATCH_INSERTED, FILE_INSERTED, TABLE_REPLACED,
          LOAD_LOG_WRITTEN, DAY_COMMITTED, DEFINITIONS_DELETED, DEFINITIONS_COMMITTED, EXPORT_CLEARED,
          EXPORT_APPLIED)


def _parse(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    point, _, nth = value.partition("@")
    if point not in POINTS or (nth and not nth.isdigit()):
        raise ValueError(f"{CRASH_AT_VARIABLE}={value!r}: expected one of {', '.join(POINTS)}, optionally @<n>")
    return point, int(nth or 1)


_target = _parse(os.environ.get(CRASH_AT_VARIABLE))
_passed: dict[str, int] = {}


def crash_point(point: str) -> None:
    if _target is None or _target[0] != point:
        return
    _passed[point] = _passed.get(point, 0) + 1
    if _passed[point] == _target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
