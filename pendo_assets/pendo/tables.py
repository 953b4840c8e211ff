"""The warehouse tables of one Pendo app, named as Pendo's native Snowflake sync names them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class EventTable(str, Enum):
    ALLEVENTS = "ALLEVENTS"
    MATCHEDPAGEEVENTS = "MATCHEDPAGEEVENTS"
    MATCHEDFEATUREEVENTS = "MATCHEDFEATUREEVENTS"
    MATCHEDTRACKTYPEEVENTS = "MATCHEDTRACKTYPEEVENTS"

    @property
    def is_matched(self) -> bool:
        return self is not EventTable.ALLEVENTS


class MatchableType(str, Enum):
    PAGE = "Page"
    FEATURE = "Feature"
    TRACK_TYPE = "TrackType"

    @property
    def table(self) -> EventTable:
        return _MATCHED_TABLE[self]


_MATCHED_TABLE = {
    MatchableType.PAGE: EventTable.MATCHEDPAGEEVENTS,
    MatchableType.FEATURE: EventTable.MATCHEDFEATUREEVENTS,
    MatchableType.TRACK_TYPE: EventTable.MATCHEDTRACKTYPEEVENTS,
}

MATCHED_TABLES = tuple(t for t in EventTable if t.is_matched)


@dataclass(frozen=True)
class DefinitionKind:
    table: str
    manifest_key: str
    id_column: str


class DefinitionTable(Enum):
    PAGES = DefinitionKind("PAGES", "pageDefinitionsFile", "pageId")
    FEATURES = DefinitionKind("FEATURES", "featureDefinitionsFile", "featureId")
    TRACKTYPES = DefinitionKind("TRACKTYPES", "trackTypeDefinitionsFile", "trackTypeId")
    GUIDES = DefinitionKind("GUIDES", "guideDefinitionsFile", "guideId")

    @property
    def table_name(self) -> str:
        return self.value.table

    @property
    def manifest_key(self) -> str:
        return self.value.manifest_key

    @property
    def id_column(self) -> str:
        return self.value.id_column


@dataclass(frozen=True, order=True)
class AppLocation:
    """One exported application: `datasync/<subscriptionId>/<applicationId>/` in the export root."""

    subscription_id: str
    application_id: str

    @property
    def folder(self) -> str:
        return f"datasync/{self.subscription_id}/{self.application_id}"

    @property
    def manifest_path(self) -> str:
        return f"{self.folder}/exportmanifest.json"

    @property
    def schema_name(self) -> str:
        return f"SUB_{self.subscription_id}_APP_{self.application_id}"

    @property
    def label(self) -> str:
        return f"subscription {self.subscription_id} app {self.application_id}"
