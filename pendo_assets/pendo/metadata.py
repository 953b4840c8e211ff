"""Visitor and account exports: the subscription-level folders `datasync/<sub>/visitor/` and `.../account/`.

Each has its own rolling manifest. An export folder holds `visitors[-NNN].avro` (or `accounts...`): one wide
row per id, a column per metadata field named by its `avroFieldName`; `metadataschema.avro`, the field
catalog; and its bill of materials, which the manifest entry repeats. The first export is full, later ones
carry only the records changed the day before, so an export's rows replace the same ids' rows and an id
missing from a later export is kept (Pendo's per-id upsert, `pendo-datasync-format.md` §4.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from pendo_assets.pendo.models import (ManifestError, export_folder_name, file_list, load_json, optional_str,
                                       parse_counter)

METADATA_SCHEMA_KEY = "metadataSchemaFile"
# The field catalog's columns copied onto each long row (Pendo's VISITORMETADATA / ACCOUNTMETADATA layout).
FIELD_ATTRIBUTES = ("group", "name", "displayName", "type", "elementType", "elementFormat", "isDeleted", "isPerApp")
FIELD_NAME_COLUMN = "avroFieldName"
RECORD_ID_COLUMN = "id"
# Every row records the export it came from; a later export's rows win.
EXPORT_COUNTER_COLUMN = "exportCounter"
EXPORT_FOLDER_COLUMN = "exportFolder"
VALUE_COLUMN = "value"


class MetadataKind(Enum):
    VISITOR = "visitor"
    ACCOUNT = "account"

    @property
    def folder(self) -> str:
        return self.value

    @property
    def plural(self) -> str:
        """The bill of materials' key and the files' name: `visitors`, `accounts`."""
        return f"{self.value}s"

    @property
    def records_table(self) -> str:
        return self.plural.upper()

    @property
    def metadata_table(self) -> str:
        return f"{self.value.upper()}METADATA"

    @property
    def fields_table(self) -> str:
        return f"{self.value.upper()}METADATASCHEMA"

    @property
    def id_column(self) -> str:
        """The long table's id column: `visitorId`, `accountId`."""
        return f"{self.value}Id"


@dataclass(frozen=True)
class MetadataLocation:
    """One subscription's visitor or account exports: `datasync/<subscriptionId>/<kind>/`."""

    subscription_id: str
    kind: MetadataKind

    @property
    def folder(self) -> str:
        return f"datasync/{self.subscription_id}/{self.kind.folder}"

    @property
    def manifest_path(self) -> str:
        return f"{self.folder}/exportmanifest.json"

    @property
    def schema_name(self) -> str:
        return f"SUB_{self.subscription_id}_{self.kind.value.upper()}"

    @property
    def label(self) -> str:
        return f"subscription {self.subscription_id} {self.kind.plural}"

    @property
    def sort_key(self) -> tuple[str, str]:
        return self.subscription_id, self.kind.value


@dataclass(frozen=True)
class MetadataExport:
    """One manifest entry of a visitor or account manifest, with its bill of materials."""

    counter: int
    root_url: str | None
    finish_time: str | None
    timestamp: str | None
    record_files: tuple[str, ...]
    schema_files: tuple[str, ...]
    # Rows the bill of materials promises, when it says (`count` or `eventCount` beside `files`).
    record_count: int | None = None

    @property
    def folder_name(self) -> str:
        return export_folder_name(self.counter, self.root_url)


def parse_metadata_manifest(raw: bytes | str, source: str, kind: MetadataKind) -> tuple[MetadataExport, ...]:
    """The manifest's exports in counter order; ManifestError names the entry and key at fault."""
    data = load_json(raw, source)
    if not isinstance(data, dict) or not isinstance(data.get("exports", []), list):
        raise ManifestError(f"{source}: expected a JSON object with an 'exports' list")
    exports = tuple(parse_metadata_entry(e, f"{source}: exports[{i}]", kind)
                    for i, e in enumerate(data.get("exports", [])))
    counters = [e.counter for e in exports]
    if len(set(counters)) != len(counters):
        raise ManifestError(f"{source}: the same counter appears twice: {sorted(counters)}")
    return tuple(sorted(exports, key=lambda e: e.counter))


def parse_metadata_entry(data: Any, where: str, kind: MetadataKind) -> MetadataExport:
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected an object")
    counter = parse_counter(data, where)
    where = f"{where} (export {counter})"
    records = data.get(kind.plural, {"files": []})
    if not isinstance(records, dict):
        raise ManifestError(f"{where}: {kind.plural!r} must be an object with a 'files' list")
    count = records.get("count", records.get("eventCount"))
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        raise ManifestError(f"{where}: {kind.plural}.count must be a non-negative integer, got {count!r}")
    schema_files = data.get(METADATA_SCHEMA_KEY, [])
    # Whether Pendo writes one name or a list is undocumented: both are accepted.
    schema_files = [schema_files] if isinstance(schema_files, str) else schema_files
    return MetadataExport(
        counter=counter,
        root_url=optional_str(data, "rootUrl", where),
        finish_time=optional_str(data, "finishTime", where),
        timestamp=optional_str(data, "timestamp", where),
        record_files=file_list(records.get("files", []), f"{where}: {kind.plural}.files"),
        schema_files=file_list(schema_files, f"{where}: {METADATA_SCHEMA_KEY}"),
        record_count=count,
    )
