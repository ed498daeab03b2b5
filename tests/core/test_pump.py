"""The lifespan-owned side of the transports: the server's shutdown reaches every running
connection through :class:`~transports.pump.Pumps`, with no polling."""

from __future__ import annotations

from app.push.connection import CloseCode, Connection, State
from app.settings import Settings
from transports.pump import Pumps


def connection() -> Connection:
    return Connection(push_ref="p", owner=None, limit=1 << 20, wakeup=lambda: None)


def test_shut_down_closes_running_connections_after_their_queue_and_later_ones_at_once() -> None:
    pumps = Pumps(Settings(load_examples=False))
    running, gone = connection(), connection()
    pumps.add(running)
    pumps.add(gone)
    pumps.discard(gone)
    pumps.shut_down()
    assert running.state is State.CLOSING and running.close_code == CloseCode.GOING_AWAY
    assert gone.state is State.OPEN
    late = connection()
    pumps.add(late)
    assert late.state is State.CLOSING and late.close_code == CloseCode.GOING_AWAY
