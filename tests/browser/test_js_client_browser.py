"""The JavaScript client (clients/js/graphpush.js) in real headless Chromium against real
uvicorn: SSE fallback and the move back, resume without loss across a forced drop, typed
close reasons, subscriptions by command, read through its async iterator and callbacks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from playwright.sync_api import Page

from app.settings import Settings
from support.app import Server
from support.browser import GATED_WEBSOCKET, DroppingProxy, blank_page, stepwise

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "js"

#: Opens a channel with the client; what its iterator yields, its states and its close
#: reasons are recorded. The iteration stops after ``until`` messages of type
#: executionFinished, or when the channel goes offline for good.
OPEN_CHANNEL = """
async ({ options, until }) => {
  Object.assign(window, { __got: [], __states: [], __closes: [], __done: false });
  const { Graphpush } = await import("/static/graphpush.js");
  const client = new Graphpush();
  const channel = client.connect({
    ...options,
    onState: (s) => window.__states.push(s),
    onClose: (r) => window.__closes.push(r),
  });
  window.__channel = channel;
  let finished = 0;
  for await (const m of channel) {
    window.__got.push([m.type, m.meta?.id ?? null, channel.connection.transport, m.data]);
    if (m.type === "executionFinished" && ++finished === until) break;
  }
  window.__done = true;
}
"""


def _open(page: Page, options: dict[str, Any], until: int = 1) -> None:
    page.evaluate(f"(args) => {{ ({OPEN_CHANNEL})(args); }}", {"options": options, "until": until})


def _wait(page: Page, condition: str) -> None:
    page.wait_for_function(condition)


def test_falls_back_to_sse_and_moves_back_to_websocket_without_loss(
    serve: Callable[..., Server], settings: Settings, open_page: Callable[..., Page]
) -> None:
    server = serve(settings)
    server.create_workflow(stepwise("stepwise"))
    page = open_page(init_scripts=(GATED_WEBSOCKET,))
    blank_page(page, server)
    _open(page, {"pushRef": "client-fallback", "wsRetryMs": 200}, until=2)
    _wait(page, "window.__states.some((s) => s.state === 'live' && s.transport === 'sse')")
    fallback = page.evaluate("window.__states.find((s) => s.state === 'live').fallback")
    assert (fallback["kind"], fallback["code"]) == ("closed", 1006)

    server.run("stepwise", push_ref="client-fallback")
    _wait(page, "window.__got.some(([type]) => type === 'executionFinished')")
    page.evaluate("window.__allowWebSocket = true")
    _wait(
        page, "((s) => s.state === 'live' && s.transport === 'websocket')(window.__states.at(-1))"
    )
    server.run("stepwise", push_ref="client-fallback")
    _wait(page, "window.__done")

    got = page.evaluate("window.__got")
    ids = [message_id for _, message_id, *_ in got]
    assert ids == list(range(1, 29)), ids  # two runs of 14 messages, no gap, no duplicate
    assert {transport for *_, transport, _ in got[:14]} == {"sse"}
    assert {transport for *_, transport, _ in got[14:]} == {"websocket"}


def test_resumes_without_loss_across_a_forced_drop_and_says_why(
    serve: Callable[..., Server], settings: Settings, open_page: Callable[..., Page]
) -> None:
    server = serve(settings)
    server.create_workflow(stepwise("stepwise"))
    page = open_page()
    proxy = DroppingProxy(forward=4, swallow=2)
    page.route_web_socket("**/agents/push*", proxy)
    blank_page(page, server)
    _open(page, {"pushRef": "client-drop"})
    _wait(page, "window.__states.some((s) => s.state === 'live')")

    server.run("stepwise", push_ref="client-drop")
    _wait(page, "window.__done")

    got = page.evaluate("window.__got")
    assert [message_id for _, message_id, *_ in got] == list(range(1, 15))
    assert "lastEventId=4" in proxy.urls[1]  # resumed after the last id it got
    closes = page.evaluate("window.__closes")
    assert [(c["kind"], c["code"], c["final"]) for c in closes] == [("slow_consumer", 4008, False)]
    assert page.evaluate("window.__channel.lastEventId") == 14


def test_a_refused_key_is_a_final_typed_close_that_ends_the_iteration(
    serve: Callable[..., Server], settings: Settings, open_page: Callable[..., Page]
) -> None:
    server = serve(msgspec.structs.replace(settings, api_keys=("sesame",)))
    page = open_page()
    blank_page(page, server)
    _open(page, {"pushRef": "client-keyless"})
    _wait(page, "window.__done")

    closes = page.evaluate("window.__closes")
    assert [(c["kind"], c["code"], c["final"]) for c in closes] == [("unauthorized", 4401, True)]
    assert page.evaluate("window.__states.at(-1).state") == "offline"
    assert page.evaluate("window.__got") == []


def test_subscribes_by_command_and_replays_a_finished_run_after_a_seq(
    serve: Callable[..., Server], settings: Settings, open_page: Callable[..., Page]
) -> None:
    server = serve(settings)
    server.create_workflow(stepwise("stepwise"))
    execution_id = server.run("stepwise")
    server.wait_for_status(execution_id, "success")
    page = open_page()
    blank_page(page, server)
    _open(page, {"pushRef": "client-subscriber"})
    _wait(page, "window.__states.some((s) => s.state === 'live')")

    ack = page.evaluate(
        "(id) => window.__channel.subscribeExecution(id, { after: 10 })", execution_id
    )
    assert ack == {"command": "subscribe_execution", "executionId": execution_id}
    _wait(page, "window.__done")
    replayed = [m[0] for m in page.evaluate("window.__got") if m[0] != "ack"]
    assert replayed == [  # seq 11..14: the last node's messages and the end
        "nodeExecuteBefore",
        "nodeExecuteAfter",
        "nodeExecuteAfterData",
        "executionFinished",
    ], replayed
    refused = page.evaluate(
        """() => window.__channel.subscribeExecution("nope").then(
            () => null, (e) => [e.name, e.code, e.status])"""
    )
    assert refused == ["GraphpushError", "not_found", 0]


def test_the_readme_example_runs_as_written(
    serve: Callable[..., Server], examples: Settings, open_page: Callable[..., Page]
) -> None:
    server = serve(examples)
    page = open_page()
    logged: list[str] = []
    page.on("console", lambda message: logged.append(message.text))
    blank_page(page, server)
    source = (CLIENT / "example.js").read_text()
    source = source.replace('"./graphpush.js"', f'"{server.url}/static/graphpush.js"')
    page.evaluate(
        """async ([source, origin]) => {
          const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
          const { tour } = await import(url);
          await tour(origin);
        }""",
        [source, server.url],
    )
    assert "finished: success last id 11" in logged, logged  # linear: 3 nodes, 11 messages
    assert "404 not_found" in logged, logged
    assert "replayed executionFinished" in logged, logged
    assert any(line.startswith("retried as ") and line.endswith(" new") for line in logged)


def test_a_second_loop_over_the_channel_gets_what_came_between_the_loops(
    serve: Callable[..., Server], settings: Settings, open_page: Callable[..., Page]
) -> None:
    server = serve(settings)
    server.create_workflow(stepwise("stepwise"))
    page = open_page()
    blank_page(page, server)
    _open(page, {"pushRef": "client-loops"})
    _wait(page, "window.__states.some((s) => s.state === 'live')")
    server.run("stepwise", push_ref="client-loops")
    _wait(page, "window.__done")  # the first loop broke at executionFinished

    second = server.run("stepwise", push_ref="client-loops")
    server.wait_for_status(second, "success")  # all of it arrives while no loop runs
    got = page.evaluate(
        """async () => {
          const types = [];
          for await (const m of window.__channel) {
            types.push([m.type, m.meta.id]);
            if (m.type === "executionFinished") break;
          }
          return types;
        }"""
    )
    assert [message_id for _, message_id in got] == list(range(15, 29)), got


def test_a_first_loop_gets_what_came_after_connect_before_it_started(
    serve: Callable[..., Server], settings: Settings, open_page: Callable[..., Page]
) -> None:
    # The README's order: connect(), await run(), then loop. A run's messages can arrive
    # while run()'s answer is still being read: they wait for the loop.
    server = serve(settings)
    server.create_workflow(stepwise("stepwise"))
    page = open_page()
    blank_page(page, server)
    page.evaluate(
        """async () => {
          const { Graphpush } = await import("/static/graphpush.js");
          window.__states = [];
          window.__channel = new Graphpush().connect({
            pushRef: "client-early",
            onState: (s) => window.__states.push(s.state),
          });
        }"""
    )
    _wait(page, "window.__states.includes('live')")
    execution_id = server.run("stepwise", push_ref="client-early")
    server.wait_for_status(execution_id, "success")  # all of it arrives before the loop
    _wait(page, "window.__channel.lastEventId === 14")
    page.evaluate(
        """() => {
          window.__ids = [];
          (async () => {
            for await (const m of window.__channel) {
              window.__ids.push(m.meta.id);
              if (m.type === "executionFinished") break;
            }
          })();
        }"""
    )
    _wait(page, "window.__ids.length >= 14")
    assert page.evaluate("window.__ids") == list(range(1, 15))
