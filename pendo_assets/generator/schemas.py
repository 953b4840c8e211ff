"""Avro writer schemas of the export files."""

from __future__ import annotations

from functools import cache

import fastavro

from pendo_assets.generator.spec import EventEncoding, PeriodIdEncoding, TimestampUnit

NAMESPACE = "io.pendo.synthetic"
TIMESTAMP_MILLIS = {"type": "long", "logicalType": "timestamp-millis"}
TIMESTAMP_MICROS = {"type": "long", "logicalType": "timestamp-micros"}
DATE = {"type": "int", "logicalType": "date"}
PERIOD_ID_TYPES = {PeriodIdEncoding.DATE: DATE, PeriodIdEncoding.ISO_DATE: "string",
                   PeriodIdEncoding.EPOCH_DAYS: "int", PeriodIdEncoding.YYYYMMDD: "long"}
TIMESTAMP_TYPES = {TimestampUnit.MILLIS: TIMESTAMP_MILLIS, TimestampUnit.MICROS: TIMESTAMP_MICROS}
ENCODED_TIMESTAMP_FIELDS = ("browserTimestamp", "lastUpdatedAt")

EVENT_FIELDS = (
    ("periodId", DATE, False),
    ("browserTimestamp", TIMESTAMP_MILLIS, False),
    ("eventId", "string", False),
    ("visitorId", "string", False),
    ("accountId", "string", True),
    ("oldVisitorId", "string", True),
    ("eventType", "string", False),
    ("eventSource", "string", True),
    ("url", "string", True),
    ("title", "string", True),
    ("elementPath", "string", True),
    ("userAgent", "string", True),
    ("browser", "string", True),
    ("language", "string", True),
    ("remoteIp", "string", True),
    ("country", "string", True),
    ("region", "string", True),
    ("latitude", "double", True),
    ("longitude", "double", True),
    ("version", "string", True),
    ("guideId", "string", True),
    ("guideStepId", "string", True),
    ("destinationStepId", "string", True),
    ("pollId", "string", True),
    ("pollResponse", "string", True),
    ("propertiesJson", "string", True),
)
DRIFT_FIELDS = (("sessionId", "string", True),)
MATCHED_FIELDS = (("matchableId", "string", False), ("lastUpdatedAt", TIMESTAMP_MILLIS, True))

DEFINITION_LIFECYCLE_FIELDS = (
    ("name", "string", False),
    ("appId", "long", False),
    ("createdAt", TIMESTAMP_MILLIS, False),
    ("lastUpdatedAt", TIMESTAMP_MILLIS, False),
    ("rulesUpdatedAt", TIMESTAMP_MILLIS, True),
    ("deletedAt", TIMESTAMP_MILLIS, True),
    ("softDeleteMethod", "int", True),
)
PAGE_FIELDS = (("pageId", "string", False), *DEFINITION_LIFECYCLE_FIELDS,
               ("rules", "string", True), ("group", "string", True))
FEATURE_FIELDS = (("featureId", "string", False), *PAGE_FIELDS[1:], ("pageId", "string", True))
TRACK_TYPE_FIELDS = (("trackTypeId", "string", False), *DEFINITION_LIFECYCLE_FIELDS,
                     ("eventName", "string", True))
GUIDE_FIELDS = (
    ("guideId", "string", False),
    ("name", "string", False),
    ("appId", "long", False),
    ("createdAt", TIMESTAMP_MILLIS, False),
    ("lastUpdatedAt", TIMESTAMP_MILLIS, False),
    ("state", "string", False),
    ("launchMethod", "string", True),
    ("isMultiStep", "boolean", False),
    ("steps", "string", True),
)
DEFINITION_FIELDS = {"Page": PAGE_FIELDS, "Feature": FEATURE_FIELDS, "TrackType": TRACK_TYPE_FIELDS,
                     "Guide": GUIDE_FIELDS}
DEFINITION_DRIFT_FIELDS = {"Page": (("isCoreEvent", "boolean", True),),
                           "Feature": (("isCoreEvent", "boolean", True),)}
METADATA_SCHEMA_FIELDS = (
    ("group", "string", False),
    ("name", "string", False),
    ("displayName", "string", True),
    ("type", "string", False),
    ("elementType", "string", True),
    ("elementFormat", "string", True),
    ("isDeleted", "boolean", False),
    ("isPerApp", "boolean", False),
    ("avroFieldName", "string", False),
)


def _record_schema(name: str, fields: tuple) -> dict:
    return fastavro.parse_schema({
        "type": "record",
        "name": name,
        "namespace": NAMESPACE,
        "fields": [_field(*field) for field in fields],
    })


def _field(name: str, avro_type: object, nullable: bool) -> dict:
    if nullable:
        return {"name": name, "type": ["null", avro_type], "default": None}
    return {"name": name, "type": avro_type}


@cache
def event_schema(matched: bool, with_drift_fields: bool, encoding: EventEncoding = EventEncoding()) -> dict:
    fields = EVENT_FIELDS + (DRIFT_FIELDS if with_drift_fields else ()) + (MATCHED_FIELDS if matched else ())
    encoded_types = {"periodId": PERIOD_ID_TYPES[encoding.period_id],
                     **{name: TIMESTAMP_TYPES[encoding.timestamps] for name in ENCODED_TIMESTAMP_FIELDS}}
    fields = tuple((name, encoded_types.get(name, avro_type), nullable) for name, avro_type, nullable in fields)
    return _record_schema("MatchedEvent" if matched else "Event", fields)


@cache
def definition_schema(object_type: str, with_drift_fields: bool = False) -> dict:
    drift = DEFINITION_DRIFT_FIELDS.get(object_type, ()) if with_drift_fields else ()
    return _record_schema(f"{object_type}Definition", DEFINITION_FIELDS[object_type] + drift)


@cache
def metadata_schema_schema() -> dict:
    return _record_schema("MetadataField", METADATA_SCHEMA_FIELDS)


def wide_metadata_schema(record_name: str, columns: tuple[tuple[str, object], ...]) -> dict:
    """Visitor or account rows: `id`, then one nullable column per metadata field."""
    return _record_schema(record_name, (("id", "string", False),
                                        *((name, avro_type, True) for name, avro_type in columns)))
