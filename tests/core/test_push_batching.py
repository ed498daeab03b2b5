"""The batching pieces of the push path: frame headers and the core's second wakeup."""

from __future__ import annotations

import asyncio

import pytest
from websockets.frames import Frame, Opcode

from app.push.connection import OVERHEAD_BYTES, Connection
from app.push.wire import Outgoing
from transports.ws_protocol import _Flag, _Inbox, frame_header


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536, 70000])
@pytest.mark.parametrize("binary", [False, True])
def test_frame_header_is_the_frame_websockets_would_send(length: int, binary: bool) -> None:
    payload = b"x" * length
    opcode = Opcode.BINARY if binary else Opcode.TEXT
    expected = Frame(opcode, payload).serialize(mask=False)
    assert frame_header(length, binary) + payload == expected


def test_the_transport_is_woken_again_when_the_queue_passes_a_quarter_of_the_bound() -> None:
    wakeups: list[int] = []
    conn = Connection(push_ref="p", owner=None, limit=4000, wakeup=lambda: wakeups.append(1))
    message = Outgoing(b"x" * (250 - OVERHEAD_BYTES))
    for _ in range(8):  # 250 bytes each: the quarter (1,000) is passed by the 4th
        conn.deliver(message)
    assert len(wakeups) == 2 and conn.pressing
    conn.data_to_send()
    assert not conn.pressing


async def test_the_lean_inbox_hands_events_over_in_order_to_a_waiting_reader() -> None:
    inbox = _Inbox()
    assert inbox.empty() and inbox.qsize() == 0
    reader = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)  # the reader waits: nothing is queued
    inbox.put_nowait({"type": "websocket.connect"})
    inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
    assert inbox.qsize() == 2
    assert await asyncio.wait_for(reader, 5) == {"type": "websocket.connect"}
    assert await inbox.get() == {"type": "websocket.disconnect", "code": 1000}
    assert inbox.empty()


async def test_the_lean_flag_is_set_when_made_and_wakes_every_waiter() -> None:
    flag = _Flag()
    assert flag.is_set() and await flag.wait()
    flag.clear()
    waiters = [asyncio.ensure_future(flag.wait()) for _ in range(2)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 5) == [True, True]
