"""Export folders, bills of materials and the export manifest, laid out as Pendo writes them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pendo_assets.generator.avro_files import AvroSink, ExportFolder, SplitAvroSink, WrittenFile
from pendo_assets.generator.clock import day_start, epoch_millis, iso_utc
from pendo_assets.generator.definitions import DEFINITION_FILES, write_definitions
from pendo_assets.generator.events import day_events, day_size
from pendo_assets.generator.ids import export_folder_name
from pendo_assets.generator.matching import RuleIndex
from pendo_assets.generator.schedule import ExportPlan, PeriodPlan
from pendo_assets.generator.schemas import event_schema
from pendo_assets.generator.world import AppWorld, Matchable

BOM_NAME = "billofmaterials.json"
MANIFEST_NAME = "exportmanifest.json"
MANIFEST_WINDOW = timedelta(days=30)
MANIFEST_DELAY = timedelta(seconds=45)


@dataclass(frozen=True)
class Destination:
    out_dir: Path
    bucket: str

    def app_dir(self, world: AppWorld) -> Path:
        return self.out_dir / "datasync" / world.subscription.subscription_id / world.app.application_id

    def root_url(self, world: AppWorld, folder_name: str) -> str:
        return (f"gs://{self.bucket}/datasync/{world.subscription.subscription_id}/"
                f"{world.app.application_id}/{folder_name}")


@dataclass(frozen=True)
class PublishedExport:
    plan: ExportPlan
    manifest_entry: dict
    newly_written: bool


def write_export(world: AppWorld, plan: ExportPlan, destination: Destination) -> PublishedExport:
    """Exports never change once complete, so a folder that already has its BOM is left untouched."""
    folder_name = export_folder_name(world.scenario_name, *world.key, world.calendar.first_export_day,
                                     plan.counter)
    folder_path = destination.app_dir(world) / folder_name
    bom_path = folder_path / BOM_NAME
    newly_written = not bom_path.exists()
    if newly_written:
        bom = _write_export_files(world, plan, ExportFolder(folder_path, world.scenario.codec_weights))
        write_json_atomically(bom_path, bom)
    else:
        bom = json.loads(bom_path.read_text(encoding="utf-8"))
    storage_size = sum((folder_path / name).stat().st_size for name in listed_files(bom))
    entry = {
        "counter": plan.counter,
        **bom,
        "exportType": plan.kind.export_type,
        "finishTime": iso_utc(plan.finish_time),
        "storageSize": storage_size,
        "rootUrl": destination.root_url(world, folder_name),
    }
    return PublishedExport(plan, entry, newly_written)


def manifest_window(published: list[PublishedExport]) -> list[PublishedExport]:
    """Pendo keeps a rolling 30 days of exports in the manifest; older folders stay in the bucket."""
    latest_finish = max(export.plan.finish_time for export in published)
    return [export for export in published if export.plan.finish_time >= latest_finish - MANIFEST_WINDOW]


def write_manifest(app_dir: Path, listed: list[PublishedExport]) -> Path:
    latest_finish = max(export.plan.finish_time for export in listed)
    manifest = {"exports": [export.manifest_entry for export in listed],
                "generatedTime": iso_utc(latest_finish + MANIFEST_DELAY)}
    manifest_path = app_dir / MANIFEST_NAME
    write_json_atomically(manifest_path, manifest)
    return manifest_path


def listed_files(bom: dict) -> list[str]:
    """Every file a BOM or manifest entry names, in order of appearance."""
    names = [name for _, key, _ in DEFINITION_FILES for name in bom.get(key, [])]
    for period in bom.get("timeDependent", []):
        names += period.get("allEvents", {}).get("files", [])
        names += [name for matched in period.get("matchedEvents", []) for name in matched["files"]]
    return names


def write_json_atomically(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _write_export_files(world: AppWorld, plan: ExportPlan, folder: ExportFolder) -> dict:
    definitions = write_definitions(world, plan, folder)
    per_day_folders = len(plan.periods) > 1
    time_dependent = [
        _write_period(world, plan, period, folder, f"{period.day.isoformat()}/" if per_day_folders else "")
        for period in plan.periods]
    return {
        "timestamp": iso_utc(plan.timestamp),
        "numberOfFiles": len(folder.files),
        "application": {"displayName": world.app.display_name, "id": world.app.application_id},
        "subscription": {"displayName": world.subscription.display_name,
                         "id": world.subscription.subscription_id},
        **definitions,
        "timeDependent": time_dependent,
    }


class _MatchedSinks:
    """One matched-events file per matchable, opened on its first match."""

    def __init__(self, folder: ExportFolder, prefix: str, schema: dict, last_updated_ms: int) -> None:
        self._folder = folder
        self._prefix = prefix
        self._schema = schema
        self._last_updated_ms = last_updated_ms
        self._sinks: dict[str, AvroSink] = {}

    def write(self, matchable: Matchable, record: dict) -> None:
        sink = self._sinks.get(matchable.matchable_id)
        if sink is None:
            path = f"{self._prefix}matchedEvents/{matchable.kind.value}/{matchable.matchable_id}.avro"
            sink = self._sinks[matchable.matchable_id] = self._folder.open(path, self._schema)
        sink.write({**record, "matchableId": matchable.matchable_id, "lastUpdatedAt": self._last_updated_ms})

    def close(self) -> dict[str, WrittenFile]:
        return {matchable_id: sink.close() for matchable_id, sink in self._sinks.items()}


def _write_period(world: AppWorld, plan: ExportPlan, period: PeriodPlan, folder: ExportFolder,
                  prefix: str) -> dict:
    with_session_id = plan.export_day >= world.calendar.date_of(world.scenario.schema_drift_day)
    candidates = world.matchables if period.is_full else period.rematched
    all_events = None
    if period.is_full:
        parts = _allevents_parts(world, period, prefix)
        all_events = SplitAvroSink(folder, parts, event_schema(False, with_session_id))
    matched_schema = event_schema(True, with_session_id)
    matched = _MatchedSinks(folder, prefix, matched_schema, epoch_millis(plan.timestamp))
    _stream_day(world, plan, period, candidates, all_events, matched)
    entry: dict[str, object] = {"periodId": iso_utc(day_start(period.day))}
    if all_events is not None:
        entry["allEvents"] = _slice(all_events.close())
    entry["matchedEvents"] = _matched_entries(candidates, matched.close(), list_unmatched=not period.is_full)
    return entry


def _stream_day(world: AppWorld, plan: ExportPlan, period: PeriodPlan, candidates: tuple[Matchable, ...],
                all_events: SplitAvroSink | None, matched: _MatchedSinks) -> None:
    rules = RuleIndex.at(candidates, plan.timestamp)
    for event in day_events(world, period.day, period.version):
        if all_events is not None:
            all_events.write(event.record)
        for matchable in rules.matches(event, period.version):
            matched.write(matchable, event.record)


def _matched_entries(candidates: tuple[Matchable, ...], files: dict[str, WrittenFile],
                     list_unmatched: bool) -> list[dict]:
    """An entry without files tells loaders to delete that object's rows of the period."""
    entries = []
    for matchable in candidates:
        written = files.get(matchable.matchable_id)
        if written is None and not list_unmatched:
            continue
        object_type = matchable.kind.value
        entries.append({**_slice([written] if written else []),
                        "id": f"{object_type}/{matchable.matchable_id}", "type": object_type})
    return entries


def _slice(files: list[WrittenFile]) -> dict:
    return {"eventCount": sum(written.rows for written in files),
            "files": [written.relative_path for written in files]}


def _allevents_parts(world: AppWorld, period: PeriodPlan, prefix: str) -> list[tuple[str, int]]:
    rows = day_size(world, period.day).rows(period.version)
    row_counts = _part_row_counts(world, period, rows)
    if len(row_counts) == 1:
        return [(f"{prefix}allevents.avro", rows)]
    return [(f"{prefix}allevents-{index:03d}.avro", count) for index, count in enumerate(row_counts)]


def _part_row_counts(world: AppWorld, period: PeriodPlan, rows: int) -> list[int]:
    if period.day == world.calendar.date_of(world.scenario.multi_file_period_day):
        half = rows // 2
        return [half, 0, rows - half]
    limit = world.scenario.max_rows_per_file
    if limit is None or rows <= limit:
        return [rows]
    return [min(limit, rows - start) for start in range(0, rows, limit)]
