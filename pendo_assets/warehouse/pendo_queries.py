"""Pendo's own queries from "Data Sync to Snowflake architecture", verbatim: our tables must run them unchanged."""

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
