"""The one daily partitions definition every event table and check shares: key = periodId's UTC day."""

from datetime import date

import dagster as dg


def daily_partitions(first_day: date) -> dg.DailyPartitionsDefinition:
    # end_offset=0: the newest partition is yesterday, the newest day Pendo exports.
    return dg.DailyPartitionsDefinition(start_date=first_day.isoformat(), timezone="UTC", end_offset=0)
