"""The Snowflake libraries (the connector, snowflake.core, Snowpark, dagster-snowflake) take seconds to import, so
only a Snowflake warehouse imports them: loading the code location and a whole `pendo-datasync sync` into DuckDB
never do. Each case runs in a fresh interpreter, which starts with nothing of ours imported.

snowflake-snowpark-python installs a .pth file that puts an empty `snowflake` namespace module in sys.modules
when every interpreter starts, so what counts is what the code imports after start-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pendo_assets.settings import ENVIRONMENT
from pendo_assets.warehouse.snowflake_config import SECRET_VARIABLES
from pendo_assets_tests.e2e import generate_small

REPO = Path(__file__).resolve().parents[1]
SNOWFLAKE_PACKAGES = ("snowflake", "dagster_snowflake")
# Nothing listens on port 9: building the code location must not connect.
SNOWFLAKE_URL = "snowflake://test@test/PENDO?host=127.0.0.1&port=9&protocol=http"

# Prints, as its last line, the Snowflake modules `body` imported and what `body` left in `result`.
PROBE = """
import json, sys
before = set(sys.modules)
{body}
imported = sorted(name for name in set(sys.modules) - before if name.split(".")[0] in {packages!r})
print(json.dumps({{"snowflake_modules": imported, "result": result}}))
"""

# What `dagster dev` runs in its code server for the location workspace.yaml names.
LOAD_CODE_LOCATION = """
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._grpc.server import LoadedRepositories

origin = LoadableTargetOrigin(executable_path=sys.executable, module_name={module!r},
                              working_directory={working_directory!r})
loaded = LoadedRepositories(origin, container_image=None, entry_point=["dagster"], container_context=None,
                            code_location_name={location!r})
(repository,) = loaded.definitions_by_name.values()
result = {{"assets": len(repository.asset_graph.get_all_asset_keys()),
           "warehouse": repository.get_top_level_resources()["warehouse"].configurable_resource_cls.__name__}}
"""

SYNC = """
from pendo_assets import cli

result = cli.main(["sync"])
"""


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exports")
    generate_small(root)
    return root


@pytest.fixture
def environment(tmp_path: Path, exports: Path) -> dict[str, str]:
    """The caller's environment without any PENDO_* or Snowflake setting, then a DuckDB warehouse and a Dagster
    instance in tmp_path, and the generated exports."""
    (tmp_path / "dagster_home").mkdir()
    kept = {name: value for name, value in os.environ.items()
            if name not in ENVIRONMENT and name not in SECRET_VARIABLES}
    return {**kept, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "PENDO_EXPORTS": str(exports), "PENDO_WAREHOUSE": str(tmp_path / "pendo.duckdb"),
            "PENDO_FIRST_DAY": "2024-01-01", "DAGSTER_HOME": str(tmp_path / "dagster_home")}


def run_probe(body: str, env: dict[str, str], cwd: Path) -> tuple[dict, str]:
    """Run `body` in a fresh interpreter: its Snowflake imports and result, and what it printed."""
    script = PROBE.format(body=body, packages=SNOWFLAKE_PACKAGES)
    process = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                             timeout=600)
    assert process.returncode == 0, process.stdout + process.stderr
    printed, _, probe = process.stdout.rstrip().rpartition("\n")
    return json.loads(probe), printed + process.stderr


def load_code_location(env: dict[str, str]) -> dict:
    """Load the code location workspace.yaml names, as `dagster dev` would, in a fresh interpreter."""
    (entry,) = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    module = entry["python_module"]
    body = LOAD_CODE_LOCATION.format(module=module["module_name"], location=module["location_name"],
                                     working_directory=str(REPO / module["working_directory"]))
    probe, _ = run_probe(body, env, cwd=REPO)
    return probe


def test_loading_the_code_location_for_duckdb_imports_nothing_from_snowflake(environment):
    probe = load_code_location(environment)

    assert probe["result"]["warehouse"] == "DuckDBWarehouseResource"
    assert probe["result"]["assets"] > 0, "the location must hold the generated app's assets"
    assert probe["snowflake_modules"] == []


@pytest.mark.slow  # it imports the Snowflake libraries: seconds
def test_loading_the_code_location_for_snowflake_imports_dagster_snowflake(environment):
    probe = load_code_location({**environment, "PENDO_WAREHOUSE": SNOWFLAKE_URL, "SNOWFLAKE_PASSWORD": "unused"})

    assert probe["result"]["warehouse"] == "SnowflakeWarehouseResource"
    assert probe["result"]["assets"] > 0
    assert "dagster_snowflake" in probe["snowflake_modules"]
    assert "snowflake.connector" in probe["snowflake_modules"]


@pytest.mark.slow  # a whole sync: Dagster's start-up, then every run of the small scenario
def test_a_sync_into_duckdb_imports_nothing_from_snowflake_and_loads_everything(environment, tmp_path):
    probe, printed = run_probe(SYNC, environment, cwd=tmp_path)

    assert probe["result"] == 0, printed
    assert "ALLEVENTS" in printed and "0 failure(s)" in printed
    assert probe["snowflake_modules"] == []
