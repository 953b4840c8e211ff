"""`pendo-datasync sync`: what the manifest sensors and the runs they request do, in one process.

`run.py` plans and executes the runs, `summary.py` reads back and prints what they did, and `lock.py`
keeps one sync at a time per Dagster instance and recovers from one that was killed.
"""

from pendo_assets.sync.run import ensure_dagster_home, sync
from pendo_assets.sync.summary import SyncSummary, print_summary, run_check_evaluations, step_failures

__all__ = ["SyncSummary", "ensure_dagster_home", "print_summary", "run_check_evaluations", "step_failures", "sync"]
