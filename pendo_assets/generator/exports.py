"""Export folders, bills of materials and the export manifest, laid out as Pendo writes them."""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Callable, TypeVar

from pendo_assets.generator.avro_files import ExportFolder, PartFormat, SplitAvroSink, SplitLimits, WrittenFile
from pendo_assets.generator.clock import day_start, epoch_millis, iso_utc, iso_utc_micros, iso_utc_nanos
from pendo_assets.generator.definitions import DEFINITION_FILES, write_definitions
from pendo_assets.generator.encodings import event_formats
from pendo_assets.generator.events import day_events, day_size
from pendo_assets.generator.ids import derived_rng, export_folder_name
from pendo_assets.generator.matching import RuleIndex
from pendo_assets.generator.schedule import ExportPlan, PeriodPlan
from pendo_assets.generator.spec import MANIFEST_WINDOW_DAYS, PeriodLayout
from pendo_assets.generator.world import AppWorld, Matchable

BOM_NAME = "billofmaterials.json"
MANIFEST_NAME = "exportmanifest.json"
MANIFEST_WINDOW = timedelta(days=MANIFEST_WINDOW_DAYS)
MANIFEST_DELAY = timedelta(seconds=45)
METADATA_FILE_KEYS = ("visitors", "accounts")
DEFAULT_AZURE_ACCOUNT = "acmependoexports"

Export = TypeVar("Export")


class DestinationKind(Enum):
    GCS = "gcs"
    S3 = "s3"
    AZURE = "azure"


@dataclass(frozen=True)
class Destination:
    """The bucket (GCS, S3) or container (Azure) Pendo writes to, and the path in it that holds `datasync/`;
    `out_dir` plays that root locally."""

    out_dir: Path
    bucket: str
    kind: DestinationKind = DestinationKind.GCS
    azure_account: str = DEFAULT_AZURE_ACCOUNT
    prefix: str = ""

    def url(self, relative: str) -> str:
        path = f"{self.prefix}/{relative}" if self.prefix else relative
        if self.kind is DestinationKind.AZURE:
            return f"https://{self.azure_account}.blob.core.windows.net/{self.bucket}/{path}"
        scheme = "gs" if self.kind is DestinationKind.GCS else "s3"
        return f"{scheme}://{self.bucket}/{path}"

    def app_dir(self, world: AppWorld) -> Path:
        return self.out_dir / self.app_folder(world)

    @staticmethod
    def app_folder(world: AppWorld) -> str:
        return f"datasync/{world.subscription.subscription_id}/{world.app.application_id}"


@dataclass(frozen=True)
class PublishedExport:
    """`lost_files`: the day and name (relative to the folder) of each listed file that never arrived."""

    plan: ExportPlan
    folder: Path
    manifest_entry: dict
    newly_written: bool
    lost_files: tuple[tuple[date, str], ...] = ()


def write_export(world: AppWorld, plan: ExportPlan, destination: Destination) -> PublishedExport:
    """Exports never change once complete, so a folder that already has its BOM is left untouched."""
    folder_name = _folder_name(world, plan)
    folder_path = destination.app_dir(world) / folder_name
    bom_path = folder_path / BOM_NAME
    newly_written = not bom_path.exists()
    if newly_written:
        bom, lost_files = _write_export_files(world, plan, _export_folder(world, folder_path))
        write_json_atomically(bom_path, bom)
        for _, name in lost_files:
            (folder_path / name).unlink()
    else:
        bom = json.loads(bom_path.read_text(encoding="utf-8"))
        lost_files = _lost_files(plan, bom)
    entry = manifest_entry(bom, plan.counter, plan.kind.export_type, plan.finish_time, folder_path,
                           destination.url(f"{Destination.app_folder(world)}/{folder_name}"))
    return PublishedExport(plan, folder_path, entry, newly_written, tuple(lost_files))


def write_uploading_export(world: AppWorld, plan: ExportPlan, destination: Destination) -> Path:
    """An export Pendo is still uploading: Avro files present, no bill of materials, not in the manifest."""
    folder_path = destination.app_dir(world) / _folder_name(world, plan)
    _write_export_files(world, plan, _export_folder(world, folder_path))
    return folder_path


def manifest_entry(bom: dict, counter: int, export_type: list[str] | None, finish_time: datetime,
                   folder: Path, root_url: str) -> dict:
    """Seed 001: a manifest entry is the complete bill of materials plus the delivery facts."""
    present = [folder / name for name in listed_files(bom) if (folder / name).exists()]
    storage_size = sum(path.stat().st_size for path in present)
    return {"counter": counter, **bom, "exportType": export_type, "finishTime": iso_utc_micros(finish_time),
            "storageSize": storage_size, "rootUrl": root_url}


def manifest_window(exports: list[Export], finish_time: Callable[[Export], datetime]) -> list[Export]:
    """Pendo keeps a rolling 30 days of exports in the manifest; older folders stay in the bucket."""
    if not exports:
        return []
    latest_finish = max(finish_time(export) for export in exports)
    return [export for export in exports if finish_time(export) >= latest_finish - MANIFEST_WINDOW]


def write_manifest(manifest_dir: Path, entries: list[dict], latest_finish: datetime,
                   rng: random.Random) -> Path:
    manifest = {"exports": entries,
                "generatedTime": iso_utc_nanos(latest_finish + MANIFEST_DELAY, rng.randrange(10**9))}
    manifest_path = manifest_dir / MANIFEST_NAME
    write_json_atomically(manifest_path, manifest)
    return manifest_path


def write_app_manifest(world: AppWorld, destination: Destination, listed: list[PublishedExport]) -> Path:
    latest_finish = max(export.plan.finish_time for export in listed)
    rng = derived_rng(*world.key, "manifest", latest_finish)
    return write_manifest(destination.app_dir(world), [export.manifest_entry for export in listed],
                          latest_finish, rng)


def listed_files(bom: dict) -> list[str]:
    """Every file a BOM or manifest entry names, in order of appearance (event, visitor or account)."""
    names = [name for _, key, _ in DEFINITION_FILES for name in bom.get(key, [])]
    for period in bom.get("timeDependent", []):
        names += period.get("allEvents", {}).get("files", [])
        names += [name for matched in period.get("matchedEvents", []) for name in matched["files"]]
    for key in METADATA_FILE_KEYS:
        names += bom.get(key, {}).get("files", [])
    if "metadataSchemaFile" in bom:
        names.append(bom["metadataSchemaFile"])
    return names


def write_json_atomically(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _folder_name(world: AppWorld, plan: ExportPlan) -> str:
    return export_folder_name(world.scenario_name, *world.key, world.app.events_per_day,
                              world.calendar.first_export_day, plan.counter)


def _export_folder(world: AppWorld, path: Path) -> ExportFolder:
    files = world.scenario.files
    return ExportFolder(path, files.codec_weights, files.block_bytes)


def _lost_files(plan: ExportPlan, bom: dict) -> list[tuple[date, str]]:
    return [(period_plan.day, period["allEvents"]["files"][0])
            for period, period_plan in zip(bom["timeDependent"], plan.periods) if period_plan.loses_file]


def _write_export_files(world: AppWorld, plan: ExportPlan, folder: ExportFolder
                        ) -> tuple[dict, list[tuple[date, str]]]:
    drifted = _drifted(world, plan)
    definitions = write_definitions(world, plan, folder, drifted)
    has_full_periods = any(period.is_full for period in plan.periods)
    time_dependent, lost_files = [], []
    for period in plan.periods:
        naming = _PeriodNaming.of(world, plan, period, has_full_periods)
        entry, lost = _write_period(world, plan, period, folder, naming, drifted)
        time_dependent.append(entry)
        lost_files += lost
    bom = {
        "timestamp": iso_utc(plan.timestamp),
        "numberOfFiles": len(folder.files),
        "application": {"displayName": world.app.display_name, "id": world.app.application_id},
        "subscription": {"displayName": world.subscription.display_name,
                         "id": world.subscription.subscription_id},
        **definitions,
        "timeDependent": time_dependent,
    }
    return bom, lost_files


def _drifted(world: AppWorld, plan: ExportPlan) -> bool:
    drift_day = world.scenario.schema_drift_day
    return drift_day is not None and plan.export_day >= world.calendar.date_of(drift_day)


@dataclass(frozen=True)
class _PeriodNaming:
    """Where one period's files go. A single-period export is flat, as documented; in a multi-period
    export each period gets its own folder or name suffix, and a retroactive block sharing an export
    with full periods is marked `retroactive`, so the same day can appear twice without collisions."""

    layout: PeriodLayout | None
    day: date
    retroactive: bool

    @classmethod
    def of(cls, world: AppWorld, plan: ExportPlan, period: PeriodPlan,
           has_full_periods: bool) -> _PeriodNaming:
        layout = world.scenario.files.layout if len(plan.periods) > 1 else None
        return cls(layout, period.day, has_full_periods and not period.is_full)

    def stem(self, name: str) -> str:
        tag = "retroactive" if self.retroactive else None
        if self.layout is None:
            return name
        if self.layout is PeriodLayout.DAY_FOLDERS:
            return "/".join(part for part in (self.day.isoformat(), tag, name) if part)
        return "_".join(part for part in (name, self.day.isoformat(), tag) if part)


class _MatchedSinks:
    """One matched-events file (or set of parts) per matchable, opened on its first match."""

    def __init__(self, folder: ExportFolder, naming: _PeriodNaming, formats: tuple[PartFormat, ...],
                 limits: SplitLimits, last_updated_ms: int) -> None:
        self._folder = folder
        self._naming = naming
        self._formats = formats
        self._limits = limits
        self._last_updated_ms = last_updated_ms
        self._sinks: dict[str, SplitAvroSink] = {}

    def write(self, matchable: Matchable, record: dict) -> None:
        sink = self._sinks.get(matchable.matchable_id)
        if sink is None:
            stem = self._naming.stem(f"matchedEvents/{matchable.kind.value}/{matchable.matchable_id}")
            # Each next matchable's parts start one format later, so one-part files of a table differ too.
            start = len(self._sinks) % len(self._formats)
            formats = self._formats[start:] + self._formats[:start]
            sink = self._sinks[matchable.matchable_id] = SplitAvroSink(self._folder, stem, formats, self._limits)
        sink.write({**record, "matchableId": matchable.matchable_id, "lastUpdatedAt": self._last_updated_ms})

    def close(self) -> dict[str, list[WrittenFile]]:
        return {matchable_id: sink.close() for matchable_id, sink in self._sinks.items()}


def _write_period(world: AppWorld, plan: ExportPlan, period: PeriodPlan, folder: ExportFolder,
                  naming: _PeriodNaming, drifted: bool) -> tuple[dict, list[tuple[date, str]]]:
    files = world.scenario.files
    limits = SplitLimits(files.max_rows_per_file, files.max_bytes_per_file)
    candidates = world.matchables if period.is_full else period.rematched
    all_events = None
    if period.is_full:
        rows = day_size(world, period.day).rows(period.version)
        multi_file_day = files.multi_file_period_day
        empty_part_after = rows // 2 if multi_file_day is not None and period.day == world.calendar.date_of(
            multi_file_day) else None
        all_events = SplitAvroSink(folder, naming.stem("allevents"), event_formats(files.encodings, False, drifted),
                                   limits, empty_part_after)
    matched = _MatchedSinks(folder, naming, event_formats(files.encodings, True, drifted), limits,
                            epoch_millis(plan.timestamp))
    rules = RuleIndex.at(candidates, plan.timestamp)
    for event in day_events(world, period.day, period.version):
        if all_events is not None:
            all_events.write(event.record)
        for matchable in rules.matches(event, period.version):
            matched.write(matchable, event.record)
    entry: dict[str, object] = {"periodId": iso_utc(day_start(period.day))}
    lost_files = []
    if all_events is not None:
        written = all_events.close()
        entry["allEvents"] = _slice(written)
        if period.loses_file:
            lost_files.append((period.day, written[0].relative_path))
    entry["matchedEvents"] = _matched_entries(candidates, matched.close(), list_unmatched=not period.is_full)
    return entry, lost_files


def _matched_entries(candidates: tuple[Matchable, ...], files: dict[str, list[WrittenFile]],
                     list_unmatched: bool) -> list[dict]:
    """An entry without files tells loaders to delete that object's rows of the period."""
    entries = []
    for matchable in candidates:
        written = files.get(matchable.matchable_id)
        if written is None and not list_unmatched:
            continue
        object_type = matchable.kind.value
        entries.append({**_slice(written or []), "id": f"{object_type}/{matchable.matchable_id}",
                        "type": object_type})
    return entries


def _slice(files: list[WrittenFile]) -> dict:
    return {"eventCount": sum(written.rows for written in files),
            "files": [written.relative_path for written in files]}
