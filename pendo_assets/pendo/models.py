"""Typed models of `exportmanifest.json` and `billofmaterials.json`.

Parsing is strict about what the loader relies on (counters, period days, file lists, matched
types) and lenient about everything else: unknown keys are ignored and optional keys may be absent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Mapping

from pendo_assets.pendo.tables import DefinitionTable, MatchableType


class ManifestError(ValueError):
    """A manifest or bill of materials that cannot be trusted; the message says where and why."""


@dataclass(frozen=True)
class NamedRef:
    id: str
    display_name: str | None = None


@dataclass(frozen=True)
class AllEventsSlice:
    files: tuple[str, ...]
    event_count: int | None


@dataclass(frozen=True)
class MatchedSlice:
    matchable_type: MatchableType
    matchable_id: str
    files: tuple[str, ...]
    event_count: int | None

    @property
    def key(self) -> str:
        return f"{self.matchable_type.value}/{self.matchable_id}"


@dataclass(frozen=True)
class Period:
    day: date
    all_events: AllEventsSlice | None
    matched_events: tuple[MatchedSlice, ...]


@dataclass(frozen=True)
class BillOfMaterials:
    timestamp: str | None = None
    number_of_files: int | None = None
    application: NamedRef | None = None
    subscription: NamedRef | None = None
    definition_files: Mapping[DefinitionTable, tuple[str, ...]] = field(default_factory=dict)
    periods: tuple[Period, ...] = ()


def export_folder_name(counter: int, root_url: str | None) -> str:
    """An export folder's own name: the last segment of its `rootUrl`."""
    if not root_url:
        raise ManifestError(f"export {counter} has no rootUrl, so its folder is unknown")
    return root_url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ExportEntry:
    """One `exports[]` entry of a manifest: an export's bill of materials plus its delivery facts."""

    counter: int
    root_url: str | None
    export_type: tuple[str, ...] | None
    finish_time: str | None
    storage_size: int | None
    bom: BillOfMaterials

    @property
    def is_retroactive(self) -> bool:
        return bool(self.export_type) and "Retroactive" in self.export_type

    @property
    def folder_name(self) -> str:
        return export_folder_name(self.counter, self.root_url)

    def periods_for(self, day: date) -> tuple[Period, ...]:
        return tuple(p for p in self.bom.periods if p.day == day)


@dataclass(frozen=True)
class ExportManifest:
    exports: tuple[ExportEntry, ...]
    generated_time: str | None = None


def parse_manifest(raw: bytes | str, source: str, matched_detail: bool = True) -> ExportManifest:
    """Parse and validate a manifest.

    `matched_detail=False` is for change detection only (the sensor): each matched entry is reduced,
    while the JSON is decoded, to a shared marker of its type, so a 3-year export listing hundreds of
    thousands of slices costs little memory. Such a manifest must never be used to load data.
    """
    data = load_json(raw, source, None if matched_detail else _matched_type_only)
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: expected a JSON object with an 'exports' list")
    exports = data.get("exports", [])
    if not isinstance(exports, list):
        raise ManifestError(f"{source}: 'exports' must be a list")
    entries = tuple(parse_export_entry(e, f"{source}: exports[{i}]") for i, e in enumerate(exports))
    counters = [e.counter for e in entries]
    if len(set(counters)) != len(counters):
        raise ManifestError(f"{source}: the same counter appears twice: {sorted(counters)}")
    return ExportManifest(exports=tuple(sorted(entries, key=lambda e: e.counter)),
                          generated_time=optional_str(data, "generatedTime", source))


def parse_export_entry(data: Any, where: str) -> ExportEntry:
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected an object")
    counter = parse_counter(data, where)
    where = f"{where} (export {counter})"
    export_type = data.get("exportType")
    if export_type is not None and not (isinstance(export_type, list)
                                        and all(isinstance(t, str) for t in export_type)):
        raise ManifestError(f"{where}: 'exportType' must be null or a list of strings")
    return ExportEntry(
        counter=counter,
        root_url=optional_str(data, "rootUrl", where),
        export_type=tuple(export_type) if export_type is not None else None,
        finish_time=optional_str(data, "finishTime", where),
        storage_size=_optional_int(data, "storageSize", where),
        bom=parse_bill_of_materials(data, where),
    )


def parse_counter(data: Mapping[str, Any], where: str) -> int:
    counter = data.get("counter")
    if not isinstance(counter, int) or isinstance(counter, bool):
        raise ManifestError(f"{where}: 'counter' must be an integer, got {counter!r}")
    return counter


def parse_bill_of_materials(data: Any, where: str) -> BillOfMaterials:
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected an object")
    definition_files = {
        table: file_list(data[table.manifest_key], f"{where}: {table.manifest_key}")
        for table in DefinitionTable if table.manifest_key in data
    }
    periods_raw = data.get("timeDependent", [])
    if not isinstance(periods_raw, list):
        raise ManifestError(f"{where}: 'timeDependent' must be a list")
    return BillOfMaterials(
        timestamp=optional_str(data, "timestamp", where),
        number_of_files=_optional_int(data, "numberOfFiles", where),
        application=_named_ref(data.get("application")),
        subscription=_named_ref(data.get("subscription")),
        definition_files=definition_files,
        periods=tuple(_parse_period(p, f"{where}: timeDependent[{i}]") for i, p in enumerate(periods_raw)),
    )


def parse_period_day(value: Any, where: str) -> date:
    """`periodId` is an ISO datetime such as `2024-04-14T00:00:00Z`; its date part is the UTC day."""
    if not isinstance(value, str):
        raise ManifestError(f"{where}: 'periodId' must be a string, got {value!r}")
    try:
        return date.fromisoformat(value.split("T", 1)[0])
    except ValueError:
        raise ManifestError(f"{where}: 'periodId' {value!r} is not an ISO date") from None


def _parse_period(data: Any, where: str) -> Period:
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected an object")
    day = parse_period_day(data.get("periodId"), where)
    where = f"{where} (day {day})"
    all_events = None
    if "allEvents" in data:
        raw = data["allEvents"]
        if not isinstance(raw, dict):
            raise ManifestError(f"{where}: 'allEvents' must be an object")
        all_events = AllEventsSlice(files=file_list(raw.get("files", []), f"{where}: allEvents.files"),
                                    event_count=_optional_int(raw, "eventCount", f"{where}: allEvents"))
    matched_raw = data.get("matchedEvents", [])
    if not isinstance(matched_raw, list):
        raise ManifestError(f"{where}: 'matchedEvents' must be a list")
    matched = tuple(_parse_matched(m, f"{where}: matchedEvents[{i}]") for i, m in enumerate(matched_raw))
    return Period(day=day, all_events=all_events, matched_events=matched)


_TYPE_MARKERS = {t.value: MatchedSlice(t, "*", (), None) for t in MatchableType}


def _matched_type_only(obj: dict[str, Any]) -> Any:
    key = obj.get("id")
    if "files" in obj and isinstance(key, str) and "/" in key and key.split("/", 1)[0] == obj.get("type", key[:0]):
        return _TYPE_MARKERS.get(obj.get("type"), obj)
    return obj


def _parse_matched(data: Any, where: str) -> MatchedSlice:
    if isinstance(data, MatchedSlice):
        return data
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected an object")
    key = data.get("id")
    if not isinstance(key, str) or "/" not in key:
        raise ManifestError(f"{where}: 'id' must look like 'Page/<id>', got {key!r}")
    type_name, matchable_id = key.split("/", 1)
    declared = data.get("type", type_name)
    if declared != type_name:
        raise ManifestError(f"{where}: 'type' {declared!r} disagrees with id {key!r}")
    try:
        matchable_type = MatchableType(type_name)
    except ValueError:
        known = ", ".join(t.value for t in MatchableType)
        raise ManifestError(
            f"{where}: unknown matched type {type_name!r} in {key!r} (known: {known}), files {data.get('files')!r}. "
            "Loading the other tables alone would leave these days silently incomplete, so nothing of this app "
            "is loaded until pendo-datasync knows the type") from None
    if not matchable_id:
        raise ManifestError(f"{where}: empty matchable id in {key!r}")
    return MatchedSlice(matchable_type=matchable_type, matchable_id=matchable_id,
                        files=file_list(data.get("files", []), f"{where}: files"),
                        event_count=_optional_int(data, "eventCount", where))


def load_json(raw: bytes | str, source: str, object_hook=None) -> Any:
    try:
        return json.loads(raw, object_hook=object_hook)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{source}: not valid JSON ({exc}); the file may be truncated or still being written") \
            from None


def file_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise ManifestError(f"{where}: expected a list of file names, got {value!r}")
    return tuple(value)


def _optional_int(data: Mapping[str, Any], key: str, where: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ManifestError(f"{where}: '{key}' must be a non-negative integer, got {value!r}")
    return value


def optional_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ManifestError(f"{where}: '{key}' must be a string, got {value!r}")
    return value


def _named_ref(value: Any) -> NamedRef | None:
    if not isinstance(value, dict) or value.get("id") is None:
        return None
    display_name = value.get("displayName")
    return NamedRef(id=str(value["id"]), display_name=display_name if isinstance(display_name, str) else None)
