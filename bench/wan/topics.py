"""``python -m bench.wan.topics BOOTSTRAP``: create the event topics, run inside a namespace.

The broker advertises its *public* address, which only the region namespaces
can reach, so the topics are created from inside one of them.
"""

from __future__ import annotations

import asyncio
import sys

from libs.common.kafka import ensure_topics
from libs.common.settings import KafkaSettings


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m bench.wan.topics HOST:PORT", file=sys.stderr)
        return 2
    asyncio.run(asyncio.wait_for(ensure_topics(KafkaSettings(bootstrap=sys.argv[1])), 30))
    return 0


if __name__ == "__main__":
    sys.exit(main())
