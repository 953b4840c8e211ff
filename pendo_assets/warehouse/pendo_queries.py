"""Pendo's own queries from "Data Sync to Snowflake architecture", verbatim: our tables must run them unchanged.
Then an analyst's join of events to visitors and accounts, as written against Pendo's native layout."""

STALE_MATCHED_FEATURE_EVENTS = """
SELECT mfe.*
FROM MatchedFeatureEvents mfe
JOIN Features f ON f.featureId = mfe.matchableId
WHERE f.deletedAt IS NOT NULL
   OR (f.softDeleteMethod = 2
   AND (mfe.lastUpdatedAt IS NULL OR mfe.lastUpdatedAt < f.rulesUpdatedAt));
"""

VALID_MATCHED_FEATURE_EVENTS = """
SELECT mfe.*
FROM MatchedFeatureEvents mfe
JOIN Features f ON f.featureId = mfe.matchableId
WHERE f.deletedAt IS NULL
  AND (f.softDeleteMethod = 1
   OR (f.softDeleteMethod = 2 AND mfe.lastUpdatedAt >= f.rulesUpdatedAt));
"""


def events_per_account(app_schema: str, visitor_schema: str, account_schema: str) -> str:
    """Events of known visitors per account: ALLEVENTS.visitorId = VISITORS.id, ALLEVENTS.accountId = ACCOUNTS.id.
    Table and column names unquoted, as an analyst writes them (Snowflake upper-cases them; DuckDB matches them
    case-insensitively); the schemas come quoted (`session.quote`), since an app id may start with `-`."""
    return f"""
SELECT a.id AS accountId, count(*) AS events, count(DISTINCT v.id) AS visitors
FROM {app_schema}.AllEvents e
JOIN {visitor_schema}.Visitors v ON v.id = e.visitorId
JOIN {account_schema}.Accounts a ON a.id = e.accountId
GROUP BY a.id
ORDER BY events DESC, accountId
"""
