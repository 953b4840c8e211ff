"""The sync lock tells the next sync whether the last one finished, so only a sync after a killed one pays for the
Dagster instance it needs to recover that one's runs."""

from __future__ import annotations

import os

import pytest

from pendo_assets.sync.lock import LOCK_FILE, exclusive_sync


def test_the_lock_says_whether_the_last_sync_finished(tmp_path):
    with exclusive_sync(tmp_path, say=print) as first:
        assert first.finished, "no sync ran before the first"
        assert (tmp_path / LOCK_FILE).read_text() == str(os.getpid()), "the holder's pid, while it runs"
    with exclusive_sync(tmp_path) as after_a_finished_one:
        assert after_a_finished_one.finished
    with pytest.raises(RuntimeError), exclusive_sync(tmp_path):
        raise RuntimeError("the sync failed, or was killed: its pid stays in the file")
    with exclusive_sync(tmp_path) as after_a_failed_one:
        assert not after_a_failed_one.finished
    with exclusive_sync(tmp_path) as after_that:
        assert after_that.finished


def test_a_lock_file_an_earlier_version_left_reads_as_unfinished(tmp_path):
    (tmp_path / LOCK_FILE).write_text("4242")
    with exclusive_sync(tmp_path) as previous:
        assert not previous.finished
