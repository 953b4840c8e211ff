"""Sensor-tick benchmark: one manifest sensor evaluated on a huge manifest, in its own process.

The manifest holds 30 daily recurring exports plus a one-time export of 3 years (1,095 days) in
which every day lists 300 matchables: about 330,000 matched slices. Only the manifest is written
(the sensor never opens Avro files). Reports the first tick's wall time, the runs it requested and the
process's peak RSS (Dagster's own import included), then the next tick after the manifest was rewritten
with nothing new (it parses everything and must request nothing), then one on the unchanged manifest.
Target: <= 5 s and <= 300 MB for the first tick, well under a second for the others.

Usage: python -m benchmarks.sensor [--days 1095] [--matchables 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

END_DAY = date(2025, 6, 2)
SUBSCRIPTION, APP = "5123456789012345", "-323232"
TYPES = ("Page", "Feature", "TrackType")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=1095, help="days in the one-time export (default 1095)")
    parser.add_argument("--matchables", type=int, default=300, help="matchables listed per day (default 300)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return tick(args.child, args.days)
    with tempfile.TemporaryDirectory() as root:
        size = write_manifest(Path(root), args.days, args.matchables)
        process = subprocess.Popen([sys.executable, "-m", "benchmarks.sensor", "--child", root, "--days",
                                    str(args.days)], stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise SystemExit(f"the sensor tick failed (status {status})")
    result = json.loads(output)
    print(f"manifest {size / 1e6:.1f} MB: 30 recurring exports + a {args.days}-day one-time export, "
          f"{args.matchables} matchables a day")
    print(f"first tick {result['seconds']:.2f} s (target <= 5 s), {result['runs']} run request(s), "
          f"peak RSS {usage.ru_maxrss / 1024:.0f} MB (target <= 300 MB; Dagster's import alone: "
          f"{result['baseline_rss_mb']:.0f} MB)")
    print(f"manifest rewritten, nothing new: {result['rewritten_seconds']:.2f} s, {result['rewritten_runs']} run "
          f"request(s); unchanged: {result['unchanged_seconds'] * 1000:.0f} ms")
    return 0


def write_manifest(root: Path, days: int, matchables: int) -> int:
    ids = [f"{TYPES[i % 3]}/{i:027d}"[-27 - len(TYPES[i % 3]) - 1:] for i in range(matchables)]
    first_day = END_DAY - timedelta(days=days)

    def period(day: date, all_events: bool) -> dict:
        prefix = f"{day}/" if all_events else ""
        entry = {"periodId": f"{day}T00:00:00Z",
                 "matchedEvents": [{"eventCount": 7, "files": [f"{prefix}matchedEvents/{i}.avro"], "id": i,
                                    "type": i.split("/")[0]} for i in ids]}
        if all_events:
            entry["allEvents"] = {"eventCount": 100, "files": [f"{prefix}allevents.avro"]}
        return entry

    def export(counter: int, periods: list[dict]) -> dict:
        folder = f"export{counter:04d}"
        return {"counter": counter, "exportType": None, "finishTime": "2025-06-02T04:00:00Z", "storageSize": 1,
                "rootUrl": f"gs://bucket/datasync/{SUBSCRIPTION}/{APP}/{folder}", "timestamp": "2025-06-02T04:00:00Z",
                "numberOfFiles": 1, "pageDefinitionsFile": ["allpages.avro"], "featureDefinitionsFile":
                    ["allfeatures.avro"], "timeDependent": periods}

    exports = [export(1, [period(first_day + timedelta(days=n), True) for n in range(days)])]
    for n in range(30):
        export_day = END_DAY - timedelta(days=29 - n)
        exports.append(export(2 + n, [period(export_day - timedelta(days=1), True),
                                      period(export_day - timedelta(days=9), True)]))
    path = root / "datasync" / SUBSCRIPTION / APP / "exportmanifest.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"exports": exports, "generatedTime": "2025-06-02T04:00:00Z"}))
    return path.stat().st_size


def tick(root: Path, days: int) -> int:
    import resource

    import dagster as dg

    from pendo_assets.definitions import build_definitions
    from pendo_assets.settings import Settings

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    settings = Settings.from_env({}, exports=str(root), warehouse=str(root / "w.duckdb"),
                                 first_day=END_DAY - timedelta(days=days + 1))
    defs = build_definitions(settings)
    (sensor,) = [s for s in defs.sensors if s.name.endswith("_manifest")]
    with dg.instance_for_test() as instance:
        def timed_tick(cursor: str | None):
            context = dg.build_sensor_context(instance=instance, definitions=defs, cursor=cursor,
                                              resources={"exports": defs.resources["exports"]})
            started = time.perf_counter()
            data = sensor.evaluate_tick(context)
            return time.perf_counter() - started, data

        seconds, first = timed_tick(None)
        manifest = next(root.glob("datasync/*/*/exportmanifest.json"))
        os.utime(manifest, ns=(time.time_ns(), time.time_ns()))
        rewritten_seconds, rewritten = timed_tick(first.cursor)
        unchanged_seconds, _ = timed_tick(rewritten.cursor)
    print(json.dumps({"seconds": seconds, "runs": len(first.run_requests), "baseline_rss_mb": baseline,
                      "rewritten_seconds": rewritten_seconds, "rewritten_runs": len(rewritten.run_requests),
                      "unchanged_seconds": unchanged_seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
