"""Kafka consumer that applies invalidation events to one region's Redis (cross-region issue)."""
