"""Small builders of manifest entries for tests of the pure format code."""

from __future__ import annotations

from datetime import date

from pendo_assets.pendo.models import (AllEventsSlice, BillOfMaterials, ExportEntry, MatchedSlice, Period)
from pendo_assets.pendo.tables import DefinitionTable, MatchableType

APP_URL = "gs://bucket/datasync/1/-323232"


def matched(key: str, count: int, files: tuple[str, ...] | None = None) -> MatchedSlice:
    type_name, matchable_id = key.split("/")
    if files is None:
        files = (f"matchedEvents/{key}.avro",) if count else ()
    return MatchedSlice(MatchableType(type_name), matchable_id, files, count)


def period(day: date, all_events: int | None = None, *matched_slices: MatchedSlice,
           files: tuple[str, ...] = ("allevents.avro",)) -> Period:
    slice_ = AllEventsSlice(files, all_events) if all_events is not None else None
    return Period(day, slice_, tuple(matched_slices))


def export(counter: int, *periods: Period, retro: bool = False,
           definitions: tuple[DefinitionTable, ...] = tuple(DefinitionTable)) -> ExportEntry:
    return ExportEntry(
        counter=counter, root_url=f"{APP_URL}/export{counter}", export_type=("Retroactive",) if retro else None,
        finish_time=None, storage_size=None,
        bom=BillOfMaterials(definition_files={t: (f"{t.table_name.lower()}.avro",) for t in definitions},
                            periods=periods))
