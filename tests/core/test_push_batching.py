"""The batching pieces of the push path: frame headers and the core's second wakeup."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from app.push.connection import OVERHEAD_BYTES, Connection
from app.push.wire import Outgoing
from transports.ws_protocol import frame_header


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
