"""`make demo`: generate realistic exports as they arrive over time, sync twice, show the result.

The first sync sees the bucket as it was 25 days ago; the second sees it today, so it loads only the
days that new exports (recurring, finalized re-exports, a retroactive export) changed.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone

from pendo_assets.cli import check_partitions_preview_shown_once
from pendo_assets.sync import print_summary, sync
from pendo_assets.generator import generate
from pendo_assets.settings import Settings
from pendo_assets.warehouse.duckdb import DuckDBWarehouse
from pendo_assets.warehouse.base import WarehouseSession
from pendo_assets.warehouse.pendo_queries import (STALE_MATCHED_FEATURE_EVENTS, VALID_MATCHED_FEATURE_EVENTS,
                                                  events_per_account)
from pendo_assets.warehouse.sql import quote_ident

def main() -> int:
    with check_partitions_preview_shown_once():
        return _demo()


def _demo() -> int:
    settings = Settings.from_env()
    end_day = datetime.now(timezone.utc).date()
    failed = False
    for step, as_of in (("25 days ago", end_day - timedelta(days=25)), ("today", None)):
        generated = generate(scenario="demo", out_dir=settings.exports, end_day=end_day, as_of=as_of)
        print(f"\n== The bucket as of {step}: {len(generated.apps)} app(s) under {settings.exports}")
        summary = sync(settings)
        print_summary(summary)
        failed = failed or bool(summary.failures or summary.checks_failed)
    print("\n== Pendo's stale/valid matched-event queries (seed 003), unchanged, per app schema")
    warehouse = DuckDBWarehouse(settings.warehouse)
    with warehouse.session() as session:
        schemas = [s for (s,) in session.query(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'SUB_%_APP_%' ORDER BY 1")]
        for schema in schemas:
            session.execute(f"USE {quote_ident(schema)}")
            stale, valid = (len(session.query(sql)) for sql in (STALE_MATCHED_FEATURE_EVENTS,
                                                                 VALID_MATCHED_FEATURE_EVENTS))
            print(f"{schema:40} stale matched feature events: {stale:6}   valid: {valid:6}")
        _visitors_and_accounts(session, schemas)
    print(f"\nLoaded into {settings.warehouse}. To browse the assets, partitions, checks and sensor runs:\n"
          "  make ui        # then open http://127.0.0.1:3000\n"
          f"  .venv/bin/python -c \"import duckdb; print(duckdb.connect('{settings.warehouse}', read_only=True)"
          ".sql('SHOW ALL TABLES'))\"")
    return 1 if failed else 0


def _visitors_and_accounts(session: WarehouseSession, app_schemas: list[str]) -> None:
    """Per subscription: its visitors and accounts, and each app's events joined to them."""
    print("\n== Visitors and accounts, and each app's events joined to them "
          "(ALLEVENTS.visitorId = VISITORS.id, ALLEVENTS.accountId = ACCOUNTS.id)")
    for app_schema in app_schemas:
        subscription = app_schema.split("_APP_", 1)[0]
        visitors, accounts = f"{subscription}_VISITOR", f"{subscription}_ACCOUNT"
        if session.table_columns(visitors, "VISITORS") is None or session.table_columns(accounts, "ACCOUNTS") is None:
            print(f"{app_schema:40} no visitor or account exports")
            continue
        rows = session.query(events_per_account(*map(session.quote, (app_schema, visitors, accounts))))
        print(f"{app_schema:40} visitors: {session.count(visitors, 'VISITORS', {}):5}   "
              f"accounts: {session.count(accounts, 'ACCOUNTS', {}):3}   "
              f"events joined to both: {sum(events for _, events, _ in rows):6}"
              + (f"   busiest account: {rows[0][0]} ({rows[0][1]} events)" if rows else ""))


if __name__ == "__main__":
    sys.exit(main())
