"""Definition files (allpages, allfeatures, alltracktypes, allguides) as of an export's moment."""

from __future__ import annotations

import json

from pendo_assets.generator.avro_files import ExportFolder
from pendo_assets.generator.clock import epoch_millis
from pendo_assets.generator.schedule import ExportPlan
from pendo_assets.generator.schemas import definition_schema
from pendo_assets.generator.world import AppWorld, Guide, Matchable, MatchableKind

DEFINITION_FILES = (
    ("Page", "pageDefinitionsFile", "allpages"),
    ("Feature", "featureDefinitionsFile", "allfeatures"),
    ("TrackType", "trackTypeDefinitionsFile", "alltracktypes"),
    ("Guide", "guideDefinitionsFile", "allguides"),
)
ID_FIELDS = {MatchableKind.PAGE: "pageId", MatchableKind.FEATURE: "featureId",
             MatchableKind.TRACK_TYPE: "trackTypeId"}


def write_definitions(world: AppWorld, plan: ExportPlan, folder: ExportFolder,
                      with_drift_fields: bool) -> dict[str, list[str]]:
    """Full exports carry every definition; retroactive ones only the objects whose rules changed."""
    files: dict[str, list[str]] = {}
    for object_type, bom_key, base_name in DEFINITION_FILES:
        records = _definition_records(world, plan, object_type)
        if not records:
            continue
        split = base_name in world.app.split_definition_files
        schema = definition_schema(object_type, with_drift_fields)
        files[bom_key] = [folder.write(path, schema, part).relative_path
                          for path, part in _definition_parts(base_name, records, split)]
    return files


def _definition_parts(base_name: str, records: list[dict], split: bool) -> list[tuple[str, list[dict]]]:
    if not split:
        return [(f"{base_name}.avro", records)]
    half = len(records) // 2
    return [(f"{base_name}-000.avro", records[:half]), (f"{base_name}-001.avro", records[half:])]


def _definition_records(world: AppWorld, plan: ExportPlan, object_type: str) -> list[dict]:
    if object_type == "Guide":
        return [_guide_record(world, guide) for guide in world.guides] if plan.has_all_definitions else []
    candidates = world.matchables if plan.has_all_definitions else plan.changed_definitions
    return [_matchable_record(world, matchable, plan) for matchable in candidates
            if matchable.kind.value == object_type]


def _matchable_record(world: AppWorld, matchable: Matchable, plan: ExportPlan) -> dict:
    moment = plan.timestamp
    rule = matchable.rule_at(moment)
    deleted_at = matchable.deleted_at_as_of(moment)
    record: dict[str, object] = {
        ID_FIELDS[matchable.kind]: matchable.matchable_id,
        "name": matchable.name_at(moment),
        "appId": int(world.app.application_id),
        "createdAt": epoch_millis(matchable.created_at),
        "lastUpdatedAt": epoch_millis(matchable.last_updated_at(moment)),
        "rulesUpdatedAt": epoch_millis(rule.effective_at),
        "deletedAt": None if deleted_at is None else epoch_millis(deleted_at),
        "softDeleteMethod": matchable.soft_delete_method,
    }
    if matchable.kind is MatchableKind.TRACK_TYPE:
        record["eventName"] = rule.value
        return record
    rule_kind = {"kind": "url", "path": rule.value} if matchable.kind is MatchableKind.PAGE else {
        "kind": "selector", "elementPath": rule.value}
    record["rules"] = json.dumps([rule_kind], ensure_ascii=False)
    record["group"] = matchable.group
    record["isCoreEvent"] = matchable.group == "Core"
    if matchable.kind is MatchableKind.FEATURE:
        record["pageId"] = matchable.page_id
    return record


def _guide_record(world: AppWorld, guide: Guide) -> dict:
    steps = [{"id": step.step_id, "type": step.step_type, "pollIds": [step.poll_id] if step.poll_id else []}
             for step in guide.steps]
    return {
        "guideId": guide.guide_id,
        "name": guide.name,
        "appId": int(world.app.application_id),
        "createdAt": epoch_millis(guide.created_at),
        "lastUpdatedAt": epoch_millis(guide.last_updated_at),
        "state": guide.state,
        "launchMethod": guide.launch_method,
        "isMultiStep": len(guide.steps) > 1,
        "steps": json.dumps(steps),
    }
