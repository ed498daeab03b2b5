"""The push core: transport-agnostic, no socket I/O (SPEC §1, §5).

- :mod:`~app.push.wire` — what transports get (``Outgoing``) and its WS/SSE byte layout
- :mod:`~app.push.connection` — one connection: bounded outbox, state, close codes
- :mod:`~app.push.tail` — an execution's live messages once, read by cursors (fan-out)
- :mod:`~app.push.buffers` — the per-pushRef resume buffer
- :mod:`~app.push.subscription` — replay-then-live merge by ``seq``
- :mod:`~app.push.session` — a pushRef's session, an execution stream
- :mod:`~app.push.registry` — routing an execution's messages: who receives which
- :mod:`~app.push.feed`, :mod:`~app.push.runs_feed` — the runs feed: who follows which workflow
- :mod:`~app.push.index` — sets of followers by execution
- :mod:`~app.push.size` — the 5 MiB rule
- :mod:`~app.push.commands` — inbound frames → commands or error replies
- :mod:`~app.push.origin`, :mod:`~app.push.admission` — who may connect
- :mod:`~app.push.hub` — ``PushHub``, the bus subscriber the lifespan owns
"""
