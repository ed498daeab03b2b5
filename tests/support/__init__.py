"""Helpers shared by every tier of tests (imported as ``support.<module>``).

- :mod:`support.app` — the app in-process, on real uvicorn, or as a subprocess; REST calls
- :mod:`support.cluster` — a scale-out deployment: API instances and worker processes
- :mod:`support.engine` — the one workflow builder (``node``, ``chain``, ``workflow``),
  event-log views, the n8n captures and their shapes
- :mod:`support.nodes` — functions for tests' ``python`` nodes (a blocking one)
- :mod:`support.push` — a fake execution service behind the push routes; the one SSE parser
  and the WebSocket reader
- :mod:`support.redis_server` — a redis-server of a test's own, to kill and restart
- :mod:`support.scaleout` — PostgreSQL schemas and Redis key prefixes of a test's own
- :mod:`support.wait` — ``eventually``: the one bounded polling loop
"""
