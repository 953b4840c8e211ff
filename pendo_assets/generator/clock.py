"""Conversions between the simulated clock and the text and numbers written into exports."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def epoch_millis(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def epoch_days(day: date) -> int:
    return (day - EPOCH.date()).days


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc)
