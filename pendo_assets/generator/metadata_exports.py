"""Subscription-level visitor and account exports (`datasync/<sub>/visitor/`, `.../account/`).

Each export folder holds wide rows (`id` plus one column per metadata field, named by the field's
`avroFieldName`) in `visitors-NNN.avro` / `accounts-NNN.avro`, the field catalog in
`metadataschema.avro`, and a bill of materials; each folder has its own rolling manifest. The
first export is full, later ones carry the records changed the day before.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from enum import Enum
from pathlib import Path

from pendo_assets.generator.avro_files import ExportFolder, PartFormat, SplitAvroSink, SplitLimits
from pendo_assets.generator.clock import iso_utc
from pendo_assets.generator.exports import (
    BOM_NAME, Destination, manifest_entry, manifest_window, write_json_atomically, write_manifest)
from pendo_assets.generator.ids import derived_fraction, derived_rng, export_folder_name
from pendo_assets.generator.schemas import TIMESTAMP_MILLIS, metadata_schema_schema, wide_metadata_schema
from pendo_assets.generator.spec import (
    METADATA_HOUR, PENDO_MAX_FILE_BYTES, MetadataExports, Scenario, SubscriptionSpec)
from pendo_assets.generator.world import AppWorld, Calendar

METADATA_SCHEMA_FILE = "metadataschema.avro"
NULL_SHARE = 0.1
WORDS = ("Prämie", "Basic", "企業", "Enterprise", "Öffentlich", "São Paulo", "trial", "Zürich", "営業部",
         "ops")


class FieldLifecycle(Enum):
    STABLE = "stable"
    ADDED = "added"
    DELETED = "deleted"


@dataclass(frozen=True)
class MetadataField:
    """One metadata field as Pendo declares it; `type` is Pendo's type name, not Avro's."""

    group: str
    name: str
    display_name: str | None
    type: str
    element_type: str | None = None
    element_format: str | None = None
    is_per_app: bool = False
    lifecycle: FieldLifecycle = FieldLifecycle.STABLE


AVRO_TYPES: dict[str, object] = {
    "string": "string", "integer": "long", "float": "double", "boolean": "boolean", "time": TIMESTAMP_MILLIS,
    "list": {"type": "array", "items": "string"},
}
# Names with spaces, umlauts and a pair that collide once sanitised, so a loader must map columns
# through `avroFieldName` instead of deriving them.
VISITOR_FIELDS = (
    MetadataField("agent", "email", "Email", "string"),
    MetadataField("agent", "full_name", "Full name", "string"),
    MetadataField("agent", "role", "Role", "string"),
    MetadataField("pendo", "lastvisit", "Last visit", "time", is_per_app=True),
    MetadataField("pendo", "lastbrowsername", "Last browser", "string"),
    MetadataField("custom", "Plan Tier", "Plan tier", "string"),
    MetadataField("custom", "plan-tier", "Plan tier (old)", "string"),
    MetadataField("custom", "seats", "Seats", "integer"),
    MetadataField("custom", "nps_score", "NPS score", "float"),
    MetadataField("custom", "beta_tester", "Beta tester", "boolean"),
    MetadataField("custom", "Größe", "Größe", "list", element_type="string"),
    MetadataField("custom", "renewal_date", "Renewal date", "time", element_format="yyyy-MM-dd",
                  lifecycle=FieldLifecycle.ADDED),
    MetadataField("custom", "legacy_flag", "Legacy flag", "boolean", lifecycle=FieldLifecycle.DELETED),
    MetadataField("salesforce", "owner", "Account owner", "string"),
)
ACCOUNT_FIELDS = (
    MetadataField("agent", "name", "Name", "string"),
    MetadataField("agent", "industry", "Industry", "string"),
    MetadataField("pendo", "firstvisit", "First visit", "time"),
    MetadataField("custom", "arr", "ARR", "float"),
    MetadataField("custom", "tier", "Tier", "string"),
    MetadataField("custom", "Region (Vertrieb)", "Region", "string"),
    MetadataField("custom", "contract_start", "Contract start", "time", lifecycle=FieldLifecycle.ADDED),
    MetadataField("custom", "legacy_segment", "Legacy segment", "string", lifecycle=FieldLifecycle.DELETED),
    MetadataField("salesforce", "account_id", "Salesforce id", "string"),
)


@dataclass(frozen=True)
class EntityKind:
    folder: str
    bom_key: str
    record_name: str
    fields: tuple[MetadataField, ...]


VISITOR = EntityKind("visitor", "visitors", "Visitor", VISITOR_FIELDS)
ACCOUNT = EntityKind("account", "accounts", "Account", ACCOUNT_FIELDS)


@dataclass
class MetadataTruth:
    """What a loader upserting by id holds: the latest exported row of each id (without `id`), and the
    latest metadata schema row of each field, by `avroFieldName`."""

    records: dict[str, dict[str, object]]
    fields: dict[str, dict[str, object]]


@dataclass(frozen=True)
class GeneratedMetadataExports:
    manifest_path: Path
    truth: MetadataTruth


@dataclass(frozen=True)
class _ExportPlan:
    counter: int
    day_number: int
    timestamp: datetime
    finish_time: datetime
    full: bool


@dataclass(frozen=True)
class _Population:
    """The ids of one entity kind, and the days on which each one's metadata changed."""

    kind: EntityKind
    ids: tuple[str, ...]
    change_days: dict[str, tuple[int, ...]]
    avro_names: dict[MetadataField, str]

    def version_on(self, entity_id: str, day_number: int) -> int:
        """The last change before `day_number`; 0 for the values the entity started with."""
        return max((day for day in self.change_days[entity_id] if day < day_number), default=0)


def write_metadata_exports(seed: int, scenario_name: str, scenario: Scenario, subscription: SubscriptionSpec,
                           app_worlds: list[AppWorld], calendar: Calendar, as_of: date,
                           destination: Destination) -> dict[str, GeneratedMetadataExports]:
    """Both kinds of one subscription, as published up to `as_of`, by folder name (`visitor`, `account`)."""
    visitors = [visitor for world in app_worlds for visitor in world.visitors]
    ids_by_kind = {
        VISITOR: tuple(dict.fromkeys(visitor.visitor_id for visitor in visitors)),
        ACCOUNT: tuple(dict.fromkeys(visitor.account_id for visitor in visitors if visitor.account_id)),
    }
    results = {}
    for kind, ids in ids_by_kind.items():
        key = (seed, subscription.subscription_id, kind.folder)
        population = _population(key, kind, ids, scenario.metadata_exports, scenario.export_days)
        plans = [plan for plan in _plans(key, calendar, scenario.export_days)
                 if calendar.date_of(plan.day_number) <= as_of]
        writer = _KindWriter(key, scenario_name, scenario, subscription, population, calendar, destination)
        entries = [writer.write(plan) for plan in plans]
        listed = manifest_window(list(zip(plans, entries)), lambda pair: pair[0].finish_time)
        manifest_dir = destination.out_dir / "datasync" / subscription.subscription_id / kind.folder
        manifest_path = write_manifest(manifest_dir, [entry for _, entry in listed],
                                       max(plan.finish_time for plan, _ in listed),
                                       derived_rng(*key, "manifest", len(plans)))
        results[kind.folder] = GeneratedMetadataExports(manifest_path, writer.truth(plans))
    return results


def avro_field_names(fields: tuple[MetadataField, ...]) -> dict[MetadataField, str]:
    """`<group>__<name>` reduced to Avro's name alphabet; a name taken already gets `_2`, `_3`, ..."""
    names: dict[MetadataField, str] = {}
    taken: set[str] = set()
    for metadata_field in fields:
        base = f"{metadata_field.group}__{re.sub(r'[^A-Za-z0-9_]', '_', metadata_field.name).lower()}"
        name, suffix = base, 1
        while name in taken:
            suffix += 1
            name = f"{base}_{suffix}"
        names[metadata_field] = name
        taken.add(name)
    return names


def _population(key: tuple[object, ...], kind: EntityKind, ids: tuple[str, ...], spec: MetadataExports,
                export_days: int) -> _Population:
    change_days = {entity_id: tuple(day for day in range(1, export_days)
                                    if derived_fraction(*key, entity_id, day) < spec.daily_change_share)
                   for entity_id in ids}
    return _Population(kind, ids, change_days, avro_field_names(kind.fields))


def _plans(key: tuple[object, ...], calendar: Calendar, export_days: int) -> list[_ExportPlan]:
    plans = []
    for day_number in range(1, export_days + 1):
        rng = derived_rng(*key, "export-times", day_number)
        start = datetime.combine(calendar.date_of(day_number), time(METADATA_HOUR), tzinfo=timezone.utc)
        timestamp = start + timedelta(minutes=rng.randrange(30), seconds=rng.randrange(60))
        finish = timestamp + timedelta(minutes=rng.randrange(1, 20), microseconds=rng.randrange(10**6))
        plans.append(_ExportPlan(day_number, day_number, timestamp, finish, full=day_number == 1))
    return plans


class _KindWriter:
    def __init__(self, key: tuple[object, ...], scenario_name: str, scenario: Scenario,
                 subscription: SubscriptionSpec, population: _Population, calendar: Calendar,
                 destination: Destination) -> None:
        self._key = key
        self._scenario_name = scenario_name
        self._spec = scenario.metadata_exports
        self._codec_weights = scenario.files.codec_weights
        self._subscription = subscription
        self._population = population
        self._calendar = calendar
        self._destination = destination

    def write(self, plan: _ExportPlan) -> dict:
        """Like event exports, a folder that already has its bill of materials is left untouched."""
        kind = self._population.kind
        folder_name = export_folder_name(self._scenario_name, *self._key, self._calendar.first_export_day,
                                         plan.counter)
        relative = f"datasync/{self._subscription.subscription_id}/{kind.folder}/{folder_name}"
        folder_path = self._destination.out_dir / relative
        bom_path = folder_path / BOM_NAME
        if bom_path.exists():
            bom = json.loads(bom_path.read_text(encoding="utf-8"))
        else:
            bom = self._write_files(plan, ExportFolder(folder_path, self._codec_weights))
            write_json_atomically(bom_path, bom)
        return manifest_entry(bom, plan.counter, None, plan.finish_time, folder_path,
                              self._destination.url(relative))

    def truth(self, plans: list[_ExportPlan]) -> MetadataTruth:
        records: dict[str, dict[str, object]] = {}
        fields: dict[str, dict[str, object]] = {}
        for plan in plans:
            for row in self._rows(plan):
                records[row.pop("id")] = row
            fields = {row["avroFieldName"]: row for row in self._schema_rows(plan)}
        return MetadataTruth(records, fields)

    def _write_files(self, plan: _ExportPlan, folder: ExportFolder) -> dict:
        kind = self._population.kind
        columns = tuple((self._population.avro_names[metadata_field], AVRO_TYPES[metadata_field.type])
                        for metadata_field in self._present_fields(plan))
        limits = SplitLimits(self._spec.rows_per_file, PENDO_MAX_FILE_BYTES)
        rows = SplitAvroSink(folder, kind.bom_key, (PartFormat(wide_metadata_schema(kind.record_name, columns)),),
                             limits, always_numbered=True)
        for row in self._rows(plan):
            rows.write(row)
        written = rows.close()
        folder.write(METADATA_SCHEMA_FILE, metadata_schema_schema(), self._schema_rows(plan))
        return {
            kind.bom_key: {"files": [part.relative_path for part in written]},
            "metadataSchemaFile": METADATA_SCHEMA_FILE,
            "timestamp": iso_utc(plan.timestamp),
            "numberOfFiles": len(folder.files),
            "subscription": {"displayName": self._subscription.display_name,
                             "id": self._subscription.subscription_id},
        }

    def _present_fields(self, plan: _ExportPlan) -> list[MetadataField]:
        return [metadata_field for metadata_field in self._population.kind.fields
                if metadata_field.lifecycle is not FieldLifecycle.ADDED
                or plan.day_number >= self._spec.field_added_day]

    def _is_deleted(self, metadata_field: MetadataField, plan: _ExportPlan) -> bool:
        return (metadata_field.lifecycle is FieldLifecycle.DELETED
                and plan.day_number >= self._spec.field_deleted_day)

    def _schema_rows(self, plan: _ExportPlan) -> Iterator[dict]:
        for metadata_field in self._present_fields(plan):
            yield {
                "group": metadata_field.group, "name": metadata_field.name,
                "displayName": metadata_field.display_name, "type": metadata_field.type,
                "elementType": metadata_field.element_type, "elementFormat": metadata_field.element_format,
                "isDeleted": self._is_deleted(metadata_field, plan), "isPerApp": metadata_field.is_per_app,
                "avroFieldName": self._population.avro_names[metadata_field],
            }

    def _rows(self, plan: _ExportPlan) -> Iterator[dict]:
        population = self._population
        present = self._present_fields(plan)
        for entity_id in population.ids:
            if not plan.full and plan.day_number - 1 not in population.change_days[entity_id]:
                continue
            version = population.version_on(entity_id, plan.day_number)
            values = self._values(entity_id, version)
            yield {"id": entity_id, **{population.avro_names[metadata_field]: (
                None if self._is_deleted(metadata_field, plan) else values[metadata_field])
                for metadata_field in present}}

    def _values(self, entity_id: str, version: int) -> dict[MetadataField, object]:
        """Every field is drawn in catalog order, so a field appearing later shifts no other value."""
        rng = derived_rng(*self._key, entity_id, version)
        changed_on = self._calendar.moment(max(version, 0), 0)
        values: dict[MetadataField, object] = {}
        for metadata_field in self._population.kind.fields:
            value = _value(rng, metadata_field, entity_id, changed_on)
            values[metadata_field] = None if rng.random() < NULL_SHARE else value
        return values


def _value(rng: random.Random, metadata_field: MetadataField, entity_id: str, changed_on: datetime) -> object:
    if metadata_field.name == "email":
        return entity_id if "@" in entity_id else None
    if metadata_field.name in ("full_name", "name"):
        return entity_id.split("@", 1)[0].replace(".", " ").title()
    kind = metadata_field.type
    if kind == "integer":
        return rng.randint(1, 500)
    if kind == "float":
        return round(rng.uniform(0, 100_000), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "time":
        return changed_on - timedelta(milliseconds=rng.randrange(30 * 86_400_000))
    if kind == "list":
        return rng.sample(WORDS, rng.randint(0, 3))
    return rng.choice(WORDS)
