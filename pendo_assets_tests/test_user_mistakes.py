"""Every mistake a user can make with settings, paths and the warehouse ends in a plain message, not a
traceback.

The CLI runs in this process (`cli.main`), on real folders, real DuckDB files and a real process holding the
warehouse; one test runs the installed `pendo-datasync` program to prove the entry point behaves the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from pendo_assets import cli
from pendo_assets.definitions import build_definitions
from pendo_assets.defs.discovery import DISCOVERY_SENSOR
from pendo_assets.errors import UserError
from pendo_assets.generator import generate
from pendo_assets.settings import ENVIRONMENT, Settings
from pendo_assets.warehouse import open_warehouse

END_DAY = date(2025, 3, 1)
BIN = Path(sys.executable).parent
SETTINGS_VARIABLES = [name for name in ENVIRONMENT if name.startswith("PENDO_")]


@pytest.fixture(autouse=True)
def plain_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No PENDO_* setting from the caller's shell; defaults (./data/...) and DAGSTER_HOME inside tmp_path."""
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dagster_home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real export root with one app, read-only for every test."""
    root = tmp_path_factory.mktemp("exports")
    generate(scenario="small", out_dir=root, end_day=END_DAY)
    return root


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    status = cli.main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return status, out, err


def assert_plain_error(status: int, out: str, err: str, *phrases: str) -> None:
    assert status == 2
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 2 and lines[-1].startswith("pendo-datasync: "), err
    for phrase in phrases:
        assert phrase in err, err


@pytest.mark.parametrize("command", ["sync", "apps"])
def test_a_missing_export_root_is_named_with_the_setting_to_fix(capsys, command):
    status, out, err = run_cli(capsys, command, "--exports", "/no/such/folder")
    assert_plain_error(status, out, err, "/no/such/folder does not exist", "--exports or PENDO_EXPORTS")


@pytest.mark.parametrize("command", ["sync", "apps"])
def test_a_root_without_datasync_asks_whether_it_is_pendos_destination_path(capsys, tmp_path, monkeypatch,
                                                                            command):
    (tmp_path / "some_folder").mkdir()
    monkeypatch.setenv("PENDO_EXPORTS", str(tmp_path / "some_folder"))
    status, out, err = run_cli(capsys, command)
    assert_plain_error(status, out, err, "has no datasync/ folder",
                       "is this the destination path configured in Pendo?")


@pytest.mark.parametrize("command", ["sync", "apps"])
def test_datasync_without_apps_is_not_an_error_and_touches_no_warehouse(capsys, tmp_path, command):
    (tmp_path / "root" / "datasync" / "5123456789012345").mkdir(parents=True)
    status, out, err = run_cli(capsys, command, "--exports", str(tmp_path / "root"),
                               "--warehouse", str(tmp_path / "w.duckdb"))
    assert status == 0
    assert f"no apps under {tmp_path / 'root'}/datasync yet" in out + err
    assert "with the first export" in out + err
    assert not (tmp_path / "w.duckdb").exists()


@pytest.mark.parametrize("variable, value, accepted", [
    ("PENDO_FIRST_DAY", "2024-13-01", "YYYY-MM-DD"),
    ("PENDO_FIRST_DAY", "yesterday", "YYYY-MM-DD"),
    ("PENDO_SENSOR_INTERVAL", "10", "whole number of seconds, at least 30"),
    ("PENDO_SENSOR_INTERVAL", "1h", "whole number of seconds, at least 30"),
    ("PENDO_WAREHOUSE_LOCK_WAIT", "-5", "whole number of seconds, at least 0"),
])
@pytest.mark.parametrize("command", ["sync", "apps"])
def test_a_bad_setting_is_named_with_its_accepted_form(capsys, monkeypatch, exports, command, variable, value,
                                                       accepted):
    monkeypatch.setenv(variable, value)
    status, out, err = run_cli(capsys, command, "--exports", str(exports))
    assert_plain_error(status, out, err, f"{variable}={value!r}", accepted)


@pytest.mark.parametrize("root, phrases", [
    ("ftp://reader:s3cret@files.example.com/pendo", ["(ftp://...) is neither a local folder nor a gs://",
                                                     "PENDO_EXPORTS"]),
    ("gs:///no-bucket", ["needs a bucket and an optional path, like gs://my-bucket/pendo"]),
    ("s3://pendo-bucket/prefix?token=s3cret", ["needs a bucket and an optional path", "without ? or #"]),
    ("az://container/../other", ["must not contain . or .."]),
])
def test_an_export_root_url_no_store_reads_is_refused_without_echoing_credentials(capsys, root, phrases):
    status, out, err = run_cli(capsys, "sync", "--exports", root)
    assert_plain_error(status, out, err, *phrases)
    assert "s3cret" not in out + err


@pytest.mark.parametrize("warehouse, phrase", [
    ("bigquery://x", "(bigquery://...) is not one pendo-datasync can write"),
    ("duckdb://relative.duckdb", "needs an absolute path after three slashes"),
])
def test_a_warehouse_url_no_backend_writes_is_refused_before_anything_touches_disk(capsys, tmp_path, exports,
                                                                                     warehouse, phrase):
    before = sorted(tmp_path.rglob("*"))
    status, out, err = run_cli(capsys, "sync", "--exports", str(exports), "--warehouse", warehouse)
    assert_plain_error(status, out, err, phrase, "--warehouse or PENDO_WAREHOUSE")
    assert "s3cret" not in out + err
    assert sorted(tmp_path.rglob("*")) == before
    assert not list(exports.rglob("*.duckdb"))


@pytest.mark.parametrize("warehouse, phrase", [
    ("snowflake://loader:s3cret@account/db", "must not hold a password; remove the ':' and what follows the user"),
    ("snowflake://loader@account", "must name one database as its path, like snowflake://"),
    ("snowflake://loader@account/db?colour=s3cret", "has an unknown parameter 'colour'; it takes warehouse, role"),
    ("snowflake://loader@account/db", "no Snowflake login secret is set; set SNOWFLAKE_PRIVATE_KEY"),
])
def test_a_snowflake_url_that_cannot_work_is_refused_before_anything_connects(capsys, monkeypatch, tmp_path, exports,
                                                                               warehouse, phrase):
    for name in ("SNOWFLAKE_PASSWORD", "SNOWFLAKE_PRIVATE_KEY", "SNOWFLAKE_PRIVATE_KEY_PATH"):
        monkeypatch.delenv(name, raising=False)
    before = sorted(tmp_path.rglob("*"))
    status, out, err = run_cli(capsys, "sync", "--exports", str(exports), "--warehouse", warehouse)
    assert_plain_error(status, out, err, phrase)
    assert "s3cret" not in out + err
    assert sorted(tmp_path.rglob("*")) == before


def test_a_duckdb_url_means_the_file_at_its_path(tmp_path):
    settings = Settings.from_env({}, exports=str(tmp_path), warehouse=f"duckdb://{tmp_path}/w.duckdb")
    assert settings.warehouse == str(tmp_path / "w.duckdb")
    warehouse = open_warehouse(f"duckdb://{tmp_path}/w.duckdb")
    with warehouse.session():
        pass
    assert warehouse.path == tmp_path / "w.duckdb" and warehouse.path.is_file()


def test_a_warehouse_path_that_is_a_folder_is_named(capsys, tmp_path, exports):
    warehouse = tmp_path / "pendo.duckdb"
    warehouse.mkdir()
    status, out, err = run_cli(capsys, "sync", "--exports", str(exports), "--warehouse", str(warehouse))
    assert_plain_error(status, out, err, f"cannot open the warehouse {warehouse}: it is a folder")


def test_a_warehouse_file_that_is_not_duckdb_is_named_and_left_alone(capsys, tmp_path, exports):
    garbage = bytes(range(256)) * 64
    warehouse = tmp_path / "pendo.duckdb"
    warehouse.write_bytes(garbage)
    status, out, err = run_cli(capsys, "sync", "--exports", str(exports), "--warehouse", str(warehouse))
    assert_plain_error(status, out, err, f"{warehouse}: the file is not a DuckDB database")
    assert warehouse.read_bytes() == garbage


@pytest.mark.parametrize("below_the_file, phrase", [("w.duckdb", "a file has that name"),
                                                     ("sub/w.duckdb", "part of its path is a file")])
def test_a_warehouse_that_cannot_be_created_names_the_folder_and_the_cause(capsys, tmp_path, exports,
                                                                            below_the_file, phrase):
    """A path below a regular file cannot be created, even by root (which chmod would not stop)."""
    (tmp_path / "afile").write_text("not a folder")
    warehouse = tmp_path / "afile" / below_the_file
    status, out, err = run_cli(capsys, "sync", "--exports", str(exports), "--warehouse", str(warehouse))
    assert_plain_error(status, out, err, f"for the warehouse {warehouse}: {phrase}")


def test_a_warehouse_held_by_another_process_is_waited_for_once_then_refused_naming_the_holder(
        capsys, tmp_path, monkeypatch, exports):
    warehouse = tmp_path / "pendo.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; connection = duckdb.connect(sys.argv[1]); "
                               "print('holding', flush=True); time.sleep(60)", str(warehouse)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        monkeypatch.setenv("PENDO_WAREHOUSE_LOCK_WAIT", "1")
        status, out, err = run_cli(capsys, "sync", "--exports", str(exports), "--warehouse", str(warehouse))
    finally:
        holder.kill()
        holder.wait()
    notice, refusal = err.strip().splitlines()
    assert notice.startswith(f"the warehouse {warehouse} is held by ")
    assert notice.endswith(f"(PID {holder.pid}), waiting up to 1 s for it to let go")
    assert status == 2
    assert refusal.startswith(f"pendo-datasync: the warehouse {warehouse} is still held by ")
    assert f"(PID {holder.pid}) after 1 s" in refusal and "PENDO_WAREHOUSE_LOCK_WAIT" in refusal


def test_debug_flag_and_pendo_debug_show_the_traceback(capsys, monkeypatch):
    for args in (["--debug", "sync"], ["sync", "--debug"], ["apps", "--debug"]):
        with pytest.raises(UserError, match="does not exist"):
            cli.main([*args, "--exports", "/no/such/folder"])
    monkeypatch.setenv("PENDO_DEBUG", "1")
    monkeypatch.setenv("PENDO_FIRST_DAY", "soon")
    with pytest.raises(UserError, match="PENDO_FIRST_DAY"):
        cli.main(["sync"])


@pytest.mark.slow  # a CLI subprocess
def test_the_installed_program_prints_the_same_plain_message(tmp_path):
    result = subprocess.run([str(BIN / "pendo-datasync"), "sync", "--exports", "/no/such/folder"],
                            capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES})
    assert result.returncode == 2
    assert result.stderr.strip() == ("pendo-datasync: the export root /no/such/folder does not exist or is "
                                     "empty; set --exports or PENDO_EXPORTS to the folder or bucket path that "
                                     "holds datasync/")
    assert "Traceback" not in result.stdout + result.stderr


def discovery_says(defs: dg.Definitions) -> str:
    (sensor,) = [s for s in defs.sensors if s.name == DISCOVERY_SENSOR]
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    context = dg.build_sensor_context(definitions=defs, resources={"exports": defs.resources["exports"]})
    tick = sensor.evaluate_tick(context)
    assert not tick.run_requests
    return tick.skip_message


def test_the_code_location_loads_on_a_missing_or_empty_root_and_discovery_says_why_it_is_empty(tmp_path):
    root = tmp_path / "exports"
    settings = Settings.from_env({}, exports=str(root), warehouse=str(tmp_path / "w.duckdb"))
    for prepare, says in [(lambda: None, f"the export root {root} does not exist"),
                          (root.mkdir, "has no datasync/ folder: is this the destination path"),
                          ((root / "datasync").mkdir, f"no apps under {root}/datasync yet")]:
        prepare()
        defs = build_definitions(settings)
        dg.Definitions.validate_loadable(defs)
        assert says in discovery_says(defs)
    assert not (tmp_path / "w.duckdb").exists(), "discovery must never open the warehouse"


def test_discovery_asks_for_a_reload_when_an_app_appears_after_the_code_location_loaded(tmp_path):
    root = tmp_path / "exports"
    (root / "datasync").mkdir(parents=True)
    settings = Settings.from_env({}, exports=str(root), warehouse=str(tmp_path / "w.duckdb"))
    loaded_before = build_definitions(settings)
    generate(scenario="small", out_dir=root, end_day=END_DAY)
    says = discovery_says(loaded_before)
    assert says.startswith("apps found that this code location does not have yet: subscription ")
    assert "reload the code location (Deployment > Reload, or restart dagster dev)" in says
    assert discovery_says(build_definitions(settings)) == "all 1 app(s) loaded"


def test_dagsters_check_partitions_preview_warning_shows_once_however_often_definitions_are_built(
        capsys, tmp_path, monkeypatch, exports):
    # A first day after every export keeps each sync short: definitions are built, no event day loads.
    monkeypatch.setenv("PENDO_FIRST_DAY", "2025-03-02")
    monkeypatch.setattr(cli, "_check_partitions_preview_shown", False)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")
        for _ in range(2):
            status, _out, _err = run_cli(capsys, "sync", "--exports", str(exports),
                                         "--warehouse", str(tmp_path / "w.duckdb"))
            assert status == 0
    preview = [w for w in shown if issubclass(w.category, dg.PreviewWarning)
               and cli.CHECK_PARTITIONS_PREVIEW.match(str(w.message))]
    assert len(preview) == 1
