"""An export whose one day matches thousands of Pages, Features and Track Events: the shape that makes a load's
statements grow with matchables unless they grow with files. Written directly (a manifest, a bill of materials,
one all-events file and one file per matchable), since the generator's world would need many more events to
match that many objects."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import fastavro

from pendo_assets.generator.schemas import event_schema
from pendo_assets.pendo.tables import AppLocation, EventTable

SUBSCRIPTION_ID, APPLICATION_ID = "5123456789012345", "-323232"
BUCKET = "acme-pendo-exports"
COUNTER = 1
FOLDER = "wide-day-export-1"
# Pendo's three kinds of matchable, with the share of the day's matchables each gets.
KINDS = (("Page", 0.5, EventTable.MATCHEDPAGEEVENTS), ("Feature", 0.4, EventTable.MATCHEDFEATUREEVENTS),
         ("TrackType", 0.1, EventTable.MATCHEDTRACKTYPEEVENTS))


@dataclass(frozen=True)
class WideDay:
    app: AppLocation
    day: date
    events: int
    files_per_table: dict[EventTable, int]  # ALLEVENTS included
    rows_per_table: dict[EventTable, int]


def wide_day(matchables: int = 2000, events_per_matchable: int = 2, day: date = date(2024, 4, 14)) -> WideDay:
    """What `write_wide_day` writes, without writing it."""
    counts = _counts(matchables)
    return WideDay(AppLocation(SUBSCRIPTION_ID, APPLICATION_ID), day, matchables * events_per_matchable,
                   {EventTable.ALLEVENTS: 1, **{table: n for (_, _, table), n in zip(KINDS, counts)}},
                   {EventTable.ALLEVENTS: matchables * events_per_matchable,
                    **{table: n * events_per_matchable for (_, _, table), n in zip(KINDS, counts)}})


def write_wide_day(root: Path, matchables: int = 2000, events_per_matchable: int = 2,
                   day: date = date(2024, 4, 14)) -> WideDay:
    """One app, one export, one day under `root` (an export root): `matchables` objects split across the three
    kinds, each matching its own `events_per_matchable` events of the day."""
    app = AppLocation(SUBSCRIPTION_ID, APPLICATION_ID)
    folder = root / app.folder / FOLDER
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    events = [_event(day, start + timedelta(seconds=n), n) for n in range(matchables * events_per_matchable)]
    _write_avro(folder / "allevents.avro", event_schema(False, False), events)
    matched_entries, first = [], 0
    for (kind, _, _), count in zip(KINDS, _counts(matchables)):
        for number in range(first, first + count):
            matchable_id = f"{kind[0]}{number:06d}-wide_day"
            name = f"matchedEvents/{kind}/{matchable_id}.avro"
            chunk = events[number * events_per_matchable:(number + 1) * events_per_matchable]
            _write_avro(folder / name, event_schema(True, False),
                        [{**e, "matchableId": matchable_id, "lastUpdatedAt": None} for e in chunk])
            matched_entries.append({"id": f"{kind}/{matchable_id}", "type": kind, "eventCount": len(chunk),
                                    "files": [name]})
        first += count
    bom = {"timestamp": start.isoformat(), "numberOfFiles": 1 + matchables,
           "timeDependent": [{"periodId": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                              "allEvents": {"eventCount": len(events), "files": ["allevents.avro"]},
                              "matchedEvents": matched_entries}]}
    (folder / "billofmaterials.json").write_text(json.dumps(bom))
    entry = {"counter": COUNTER, **bom, "exportType": None, "finishTime": (start + timedelta(days=1)).isoformat(),
             "storageSize": None, "rootUrl": f"gs://{BUCKET}/{app.folder}/{FOLDER}"}
    (root / app.manifest_path).write_text(json.dumps({"exports": [entry]}))
    return wide_day(matchables, events_per_matchable, day)


def _counts(matchables: int) -> list[int]:
    counts = [round(matchables * share) for _, share, _ in KINDS[:-1]]
    return [*counts, matchables - sum(counts)]


def _event(day: date, moment: datetime, number: int) -> dict:
    return {"periodId": day, "browserTimestamp": moment, "eventId": f"wide-{number:07d}",
            "visitorId": f"visitor-{number % 50}", "eventType": "click"}


def _write_avro(path: Path, schema: dict, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        fastavro.writer(handle, schema, records, codec="deflate")
