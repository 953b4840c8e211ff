"""One sensor per app manifest: request runs for exactly the (table, day) pairs new exports affect.

The cursor lives in Dagster (the export bucket may be Pendo's read-only one): the manifest's
fingerprint, to skip unchanged manifests without parsing them, and the counter -> folder of every
entry already handled. Run keys carry the export counters, so a re-exported day loads again.
"""


import json

import dagster as dg

from pendo_assets.defs.assets import AppAssets
from pendo_assets.defs.pending import pending_from_history
from pendo_assets.defs.resources import ExportStoreResource
from pendo_assets.pendo.models import parse_manifest


def build_manifest_sensor(app_assets: AppAssets, partitions: dg.PartitionsDefinition,
                          interval_seconds: int) -> dg.SensorDefinition:
    app = app_assets.app

    @dg.sensor(
        name=f"{app_assets.prefix}_manifest",
        description=f"Watches {app.manifest_path} and loads the days and definitions its new exports change.",
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        target=[app_assets.definitions, app_assets.events],
    )
    def manifest_sensor(context: dg.SensorEvaluationContext, exports: ExportStoreResource):
        store = exports.open()
        cursor = json.loads(context.cursor) if context.cursor else {}
        fingerprint = store.fingerprint(app.manifest_path)
        if cursor.get("fingerprint") == fingerprint:
            return dg.SkipReason(f"{app.manifest_path} unchanged")
        manifest = parse_manifest(store.read_bytes(app.manifest_path), f"{store.url}/{app.manifest_path}",
                                  matched_detail=False)
        handled = cursor.get("exports", {})
        new = [e for e in manifest.exports if handled.get(str(e.counter)) != e.folder_name]
        work = pending_from_history(app_assets, new, partitions, context.instance)
        warning = work.outside_partitions_warning()
        if warning:
            context.log.warning(warning)
        requests = work.run_requests()
        new_cursor = json.dumps({"fingerprint": fingerprint,
                                 "exports": {str(e.counter): e.folder_name for e in manifest.exports}})
        if not requests:
            return dg.SensorResult(skip_reason=f"{len(new)} new export(s), nothing left to load", cursor=new_cursor)
        context.log.info(f"{app.label}: exports {[e.counter for e in new]} -> {len(requests)} run(s)")
        return dg.SensorResult(run_requests=requests, cursor=new_cursor)

    return manifest_sensor
