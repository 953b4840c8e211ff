"""Event records as a file part of each `EventEncoding` writes them: the same day and instant in any."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from pendo_assets.generator.avro_files import PartFormat
from pendo_assets.generator.clock import EPOCH
from pendo_assets.generator.schemas import ENCODED_TIMESTAMP_FIELDS, event_schema
from pendo_assets.generator.spec import EventEncoding, PeriodIdEncoding, TimestampUnit

MICROS_PER_MILLI = 1_000


def _iso_date(epoch_days: int) -> str:
    return (EPOCH.date() + timedelta(days=epoch_days)).isoformat()


def _yyyymmdd(epoch_days: int) -> int:
    day = EPOCH.date() + timedelta(days=epoch_days)
    return day.year * 10_000 + day.month * 100 + day.day


_PERIOD_ID_VALUES: dict[PeriodIdEncoding, Callable[[int], object]] = {
    PeriodIdEncoding.DATE: lambda epoch_days: epoch_days,
    PeriodIdEncoding.EPOCH_DAYS: lambda epoch_days: epoch_days,
    PeriodIdEncoding.ISO_DATE: _iso_date,
    PeriodIdEncoding.YYYYMMDD: _yyyymmdd,
}


def event_formats(encodings: tuple[EventEncoding, ...], matched: bool, with_drift_fields: bool
                  ) -> tuple[PartFormat, ...]:
    return tuple(PartFormat(event_schema(matched, with_drift_fields, encoding), _encoder(encoding))
                 for encoding in encodings)


def _encoder(encoding: EventEncoding) -> Callable[[dict], dict] | None:
    """Events hold `periodId` as days since the epoch and instants as epoch milliseconds, which is what the
    default encoding writes, so its records go out untouched."""
    if encoding == EventEncoding():
        return None
    period_id = _PERIOD_ID_VALUES[encoding.period_id]
    scale = MICROS_PER_MILLI if encoding.timestamps is TimestampUnit.MICROS else 1

    def encode(record: dict) -> dict:
        encoded = {**record, "periodId": period_id(record["periodId"])}
        for name in ENCODED_TIMESTAMP_FIELDS:
            if encoded.get(name) is not None:
                encoded[name] *= scale
        return encoded
    return encode
