"""Snapshot digests, diffs and repairs across regions (reconciler issue)."""
