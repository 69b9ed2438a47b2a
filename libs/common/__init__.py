"""Shared building blocks of every mrcache service.

Settings pieces, naming rules, versions, the Redis key schema and scripts, the
event model and codec, the event publisher with its outbox, errors and metrics.
"""

__version__ = "0.1.0"
