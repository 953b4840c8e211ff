"""What a headless sync did, read back from the Dagster instance, and how it is printed."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg


@dataclass
class TableSummary:
    days: set[str] = field(default_factory=set)
    rows: int = 0
    checks_passed: int = 0
    checks_failed: int = 0


@dataclass
class SyncSummary:
    tables: dict[tuple[str, str], TableSummary] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    runs: int = 0

    def table(self, app: str, table: str) -> TableSummary:
        return self.tables.setdefault((app, table), TableSummary())

    @property
    def checks_failed(self) -> int:
        return sum(t.checks_failed for t in self.tables.values())

    def record(self, app: str, instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> None:
        """Count from the instance, which keeps every day's events even when a later day failed the step."""
        self.runs += 1
        for materialization in run_materializations(instance, result.run_id):
            table = self.table(app, materialization.asset_key.path[-1].upper())
            row_count = materialization.metadata.get("dagster/row_count")
            rows = row_count.value if row_count is not None else 0
            if materialization.partition is None:
                table.rows = rows
            else:
                table.days.add(materialization.partition)
                table.rows += rows
        for evaluation in run_check_evaluations(instance, result.run_id):
            table = self.table(app, evaluation.asset_key.path[-1].upper())
            if evaluation.passed:
                table.checks_passed += 1
            else:
                table.checks_failed += 1
        self.failures.extend(step_failures(result))


def run_materializations(instance: dg.DagsterInstance, run_id: str) -> list[dg.AssetMaterialization]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    return [r.event_log_entry.dagster_event.step_materialization_data.materialization for r in records]


def run_check_evaluations(instance: dg.DagsterInstance, run_id: str) -> list[dg.AssetCheckEvaluation]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    return [r.event_log_entry.dagster_event.event_specific_data for r in records]


def step_failures(result: dg.ExecuteInProcessResult) -> list[str]:
    """The messages of failed steps, unwrapped to the error the pipeline raised."""
    messages = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            while error.cause is not None:
                error = error.cause
            messages.append(error.message.strip())
    return messages


def print_summary(summary: SyncSummary) -> None:
    """Per app and table: days (re)loaded, rows they now hold, and count checks passed and failed."""
    width = max([len(app) for app, _ in summary.tables] + [3])
    print(f"\n{'app':{width}} {'table':24} {'days':>5} {'rows':>10} {'checks ok':>9} {'failed':>6}")
    for (app, table), t in sorted(summary.tables.items()):
        days = str(len(t.days)) if t.days else "-"
        print(f"{app:{width}} {table:24} {days:>5} {t.rows:>10,} {t.checks_passed:>9} {t.checks_failed:>6}")
    if not summary.tables:
        print("nothing to load: every export in the manifests is already loaded")
    print(f"\n{summary.runs} run(s); {len(summary.failures)} failure(s)")
    for failure in summary.failures:
        print(f"FAILED: {failure}")
