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


def iso_utc_micros(moment: datetime) -> str:
    """The precision of Pendo's `finishTime` (seed 001: `2023-03-03T14:10:15.311651Z`)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_utc_nanos(moment: datetime, nanoseconds: int) -> str:
    """The precision of Pendo's `generatedTime` (seed 001: `2023-03-05T04:17:59.853205005Z`); Python
    datetimes stop at microseconds, so the sub-second part comes from `nanoseconds` (0..999_999_999)."""
    return f"{moment.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S')}.{nanoseconds:09d}Z"
