"""End to end: the web canvas in real headless Chromium (Playwright) against real uvicorn.

These drive the page as a newcomer would: pick a workflow, press Run, watch the nodes light
up, cancel a slow run; and they prove the push client's promises: binary frames decoded,
SSE fallback when no WebSocket can be had, resume from the last id after a drop, and a REST
refetch when the server can no longer resume. The browser fixtures are in conftest.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import pytest
from playwright.sync_api import Page, expect

from app.settings import Settings
from support.app import Server
from support.browser import GATED_WEBSOCKET, WAIT_MS, DroppingProxy, blank_page, stepwise
from support.engine import chain, node

pytestmark = pytest.mark.timeout(60)

NODE = '[data-testid="node"]'

#: A WebSocket that never opens, as behind a proxy that refuses upgrades.
BLOCK_WEBSOCKET = """
window.WebSocket = class BlockedWebSocket extends EventTarget {
  constructor(url) {
    super();
    this.url = String(url);
    this.readyState = 3;
    setTimeout(() => {
      this.dispatchEvent(new Event("error"));
      this.dispatchEvent(new CloseEvent("close", { code: 1006, reason: "", wasClean: false }));
    }, 0);
  }
  send() { throw new DOMException("blocked", "InvalidStateError"); }
  close() {}
};
"""


def go(page: Page, server: Server, path: str) -> None:
    page.goto(server.url + path)
    expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)


def expect_live(page: Page, transport: str) -> None:
    status = page.get_by_test_id("connection-status")
    expect(status).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    expect(status).to_have_attribute("data-transport", transport, timeout=WAIT_MS)


def expect_nodes(page: Page, statuses: dict[str, str]) -> None:
    expect(page.locator(NODE)).to_have_count(len(statuses), timeout=WAIT_MS)
    for name, status in statuses.items():
        node = page.locator(f'{NODE}[data-node-name="{name}"]')
        expect(node).to_have_attribute("data-status", status, timeout=WAIT_MS)


def expect_run(page: Page, status: str) -> None:
    run_status = page.get_by_test_id("run-status")
    expect(run_status).to_have_attribute("data-status", status, timeout=WAIT_MS)


def status_changes(page: Page) -> dict[str, list[str]]:
    """Node name -> every status it showed, in order, ending with the current one."""
    changes: dict[str, list[str]] = {}
    for name, left in page.evaluate("window.__statuses"):
        changes.setdefault(name, []).append(left)
    for name, statuses in changes.items():
        node = page.locator(f'{NODE}[data-node-name="{name}"]')
        statuses.append(str(node.get_attribute("data-status")))
    return changes


def test_the_page_and_its_files_are_served_same_origin_only(
    serve: Callable[..., Server], settings: Settings
) -> None:
    server = serve(settings)
    page = httpx.get(f"{server.url}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for src in re.findall(r'(?:src|href)="([^"#]+)"', page.text):
        assert src.startswith(("/static/", "data:")), src  # nothing from the network
    for name, kind in (("canvas.js", "javascript"), ("canvas.css", "text/css")):
        response = httpx.get(f"{server.url}/static/{name}", timeout=10)
        assert response.status_code == 200
        assert kind in response.headers["content-type"]
    script = httpx.get(f"{server.url}/static/canvas.js", timeout=10).text
    assert set(re.findall(r"(?:https?|wss?)://[^\s\"'`]+", script)) == {
        "http://www.w3.org/2000/svg"
    }
    assert httpx.get(f"{server.url}/static/nope.js", timeout=10).status_code == 404


def test_pressing_run_lights_every_node_up_live_over_websocket(
    serve: Callable[..., Server], examples: Settings, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    server = serve(examples)
    page = open_page()
    go(page, server, "/#wf=fan-out")
    expect_live(page, "websocket")
    expect(page.get_by_test_id("workflow-item")).to_have_count(7)
    expect_nodes(
        page, dict.fromkeys(["Start", "Research", "Draft", "Combine", "Count words"], "idle")
    )

    page.get_by_test_id("run-button").click()

    expect_nodes(
        page, dict.fromkeys(["Start", "Research", "Draft", "Combine", "Count words"], "success")
    )
    expect_run(page, "success")
    # Each node went pending/running before success: painted message by message, live.
    for name, changes in status_changes(page).items():
        assert changes[-1] == "success", (name, changes)
        assert "running" in changes, (name, changes)
    # nodeExecuteAfterData arrives as binary frames: decoded, its items shown for a node.
    log = page.get_by_test_id("activity-log")
    expect(log.locator('[data-type="nodeExecuteAfterData"]')).to_have_count(5)
    expect(log.locator('[data-type="executionFinished"]')).to_have_count(1)
    page.locator(f'{NODE}[data-node-name="Draft"]').click()
    expect(page.get_by_test_id("node-output")).to_contain_text('"draft": "ready"')
    row = page.get_by_test_id("history-row").first
    expect(row).to_have_attribute("data-status", "success", timeout=WAIT_MS)
    expect(row.locator("td").nth(3)).to_have_text(re.compile(r"^(\d+ ms|[\d.]+ s)$"))
    page.screenshot(path=tmp_path / "fan-out-success.png")


def test_cancel_from_the_page_stops_a_one_minute_run(
    serve: Callable[..., Server], examples: Settings, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    server = serve(examples)
    page = open_page()
    go(page, server, "/#wf=slow")
    expect_live(page, "websocket")

    page.get_by_test_id("run-button").click()
    expect_nodes(page, {"Start": "success", "Think": "running", "Answer": "pending"})
    expect_run(page, "running")
    page.screenshot(path=tmp_path / "slow-running.png")
    page.get_by_test_id("cancel-button").click()

    expect_run(page, "canceled")
    expect_nodes(page, {"Start": "success", "Think": "canceled", "Answer": "pending"})
    expect(page.get_by_test_id("cancel-button")).to_be_disabled()
    row = page.get_by_test_id("history-row").first
    expect(row).to_have_attribute("data-status", "canceled", timeout=WAIT_MS)
    execution_id = page.get_by_test_id("run-status").get_attribute("data-execution-id")
    body = httpx.get(f"{server.url}/agents/executions/{execution_id}", timeout=10).json()
    assert body["status"] == "canceled"
    assert body["duration_ms"] < 10_000


def test_without_websocket_the_page_falls_back_to_sse_and_still_lights_up(
    serve: Callable[..., Server], examples: Settings, open_page: Callable[..., Page]
) -> None:
    server = serve(examples)
    page = open_page(init_scripts=(BLOCK_WEBSOCKET,))
    go(page, server, "/#wf=linear")

    expect_live(page, "sse")
    expect(page.get_by_test_id("connection-detail")).to_contain_text(
        "WebSocket failed (close 1006)"
    )
    page.get_by_test_id("run-button").click()

    expect_nodes(page, {"Start": "success", "Greet": "success", "Sign": "success"})
    expect_run(page, "success")
    assert all("running" in changes for changes in status_changes(page).values())


def test_transport_sse_flag_forces_sse_and_runs_with_the_typed_input(
    serve: Callable[..., Server], examples: Settings, open_page: Callable[..., Page]
) -> None:
    server = serve(examples)
    page = open_page()
    go(page, server, "/?transport=sse#wf=support-triage")
    expect_live(page, "sse")

    page.get_by_test_id("input-editor").fill("[1, 2]")
    expect(page.get_by_test_id("input-error")).to_contain_text("JSON object")
    expect(page.get_by_test_id("run-button")).to_be_disabled()
    page.get_by_test_id("input-editor").fill('{"topic": "billing"}')
    page.get_by_test_id("run-button").click()

    expect_nodes(
        page,
        {"Start": "success", "Is billing?": "success", "Billing": "success", "Other": "pending"},
    )
    expect_run(page, "success")


def test_a_waiting_run_is_resumed_from_the_page(
    serve: Callable[..., Server], examples: Settings, open_page: Callable[..., Page]
) -> None:
    server = serve(examples)
    page = open_page()
    go(page, server, "/#wf=approval")
    expect_live(page, "websocket")

    page.get_by_test_id("run-button").click()
    expect_run(page, "waiting")
    expect_nodes(
        page, {"Start": "success", "Prepare": "success", "Approve": "waiting", "Done": "pending"}
    )
    page.get_by_test_id("resume-editor").fill('{"approved": true}')
    page.get_by_test_id("resume-button").click()

    expect_run(page, "success")
    expect_nodes(page, dict.fromkeys(["Start", "Prepare", "Approve", "Done"], "success"))
    expect(page.get_by_test_id("waiting-panel")).to_be_hidden()


def test_after_a_drop_the_page_reconnects_and_resumes_from_its_last_id(
    serve: Callable[..., Server], settings: Settings, open_page: Callable[..., Page]
) -> None:
    server = serve(settings)
    server.create_workflow(stepwise("stepwise"))
    page = open_page()
    # The page's first frames are its runs feed's: runsSnapshot (meta.id 1) and the ack.
    proxy = DroppingProxy(forward=5, swallow=2)
    page.route_web_socket("**/agents/push*", proxy)
    go(page, server, "/#wf=stepwise")
    expect_live(page, "websocket")
    expect(page.get_by_test_id("history-count")).to_have_text("0")

    page.get_by_test_id("run-button").click()

    expect_nodes(page, dict.fromkeys(["Start", "Fetch", "Think", "Reply"], "success"))
    expect_run(page, "success")
    assert len(proxy.urls) == 2, proxy.urls
    assert "lastEventId=0" in proxy.urls[0]
    assert "lastEventId=4" in proxy.urls[1]  # the meta.id of the last message it got
    expect(page.get_by_test_id("connection-detail")).to_contain_text("resumed after close 4008")
    ids = [i for i in page.locator('[data-testid="activity-log"] .log-id').all_inner_texts() if i]
    assert sorted(ids, key=lambda i: int(i[1:])) == [f"#{n}" for n in range(1, 16)]  # no gap
    assert not page.locator('[data-type="resumeFailed"]').count()


def test_when_resume_fails_the_page_refetches_the_run_over_rest(
    serve: Callable[..., Server], settings: Settings, open_page: Callable[..., Page]
) -> None:
    server = serve(msgspec.structs.replace(settings, resume_buffer_count=1))
    server.create_workflow(stepwise("stepwise"))
    page = open_page()
    page.route_web_socket("**/agents/push*", DroppingProxy(forward=4, swallow=2))
    go(page, server, "/#wf=stepwise")
    expect_live(page, "websocket")

    with page.expect_response(lambda r: "include_data=true" in r.url, timeout=WAIT_MS) as refetch:
        page.get_by_test_id("run-button").click()
        log = page.get_by_test_id("activity-log")
        expect(log.locator('[data-type="resumeFailed"]')).to_have_count(1, timeout=WAIT_MS)
    assert refetch.value.ok

    expect_nodes(page, dict.fromkeys(["Start", "Fetch", "Think", "Reply"], "success"))
    expect_run(page, "success")


def test_the_runs_table_opens_a_past_run_in_its_final_state(
    serve: Callable[..., Server], examples: Settings, open_page: Callable[..., Page]
) -> None:
    server = serve(examples)
    execution_id = server.run("failing")
    server.wait_for_status(execution_id, "error", within=WAIT_MS / 1000)
    page = open_page()
    go(page, server, "/#wf=failing")
    row = page.locator(f'[data-testid="history-row"][data-execution-id="{execution_id}"]')
    expect(row).to_have_attribute("data-status", "error", timeout=WAIT_MS)
    expect_run(page, "idle")

    row.click()

    expect_run(page, "error")
    expect_nodes(page, {"Start": "success", "Check": "error", "Never": "pending"})
    check = page.locator(f'{NODE}[data-node-name="Check"]')
    expect(check).to_contain_text("the check failed")
    expect(row).to_have_attribute("aria-current", "true")


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_the_runs_table_follows_the_runs_feed_without_polling(
    serve: Callable[..., Server],
    examples: Settings,
    open_page: Callable[..., Page],
    transport: str,
) -> None:
    server = serve(examples)
    older = server.run("linear")
    server.wait_for_status(older, "success", within=WAIT_MS / 1000)
    page = open_page(init_scripts=(BLOCK_WEBSOCKET,) if transport == "sse" else ())
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    go(page, server, "/#wf=linear")
    expect_live(page, transport)
    rows = page.get_by_test_id("history-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-execution-id", older)

    started_elsewhere = server.run("linear")  # not from this page: only the feed tells it

    row = page.locator(f'[data-testid="history-row"][data-execution-id="{started_elsewhere}"]')
    expect(row).to_have_attribute("data-status", "success", timeout=WAIT_MS)
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-execution-id", started_elsewhere)
    expect(row.locator("td").nth(4)).to_have_text("3/3")
    assert not [url for url in requests if "/executions" in url], requests
    feed = "/agents/workflows/linear/stream"
    assert any(feed in url for url in requests) == (transport == "sse"), requests


# ---- the push module on its own (app/http/static/push.js) ---------------------------------

STATIC_DIR = Path(__file__).parents[2] / "app" / "http" / "static"

#: Starts a PushConnection in the blank page; its messages and states are recorded.
START_PUSH = """
async ({ pushRef, options }) => {
  const { PushConnection } = await import("/static/push.js");
  window.__got = [];
  window.__states = [];
  const push = new PushConnection({
    pushRef,
    ...options,
    onMessage: (m) => window.__got.push([m.type, push.lastId, push.transport]),
    onState: (s) => window.__states.push(s),
  });
  push.start();
}
"""


def wait_for_type(page: Page, message_type: str) -> None:
    js = f"window.__got.some(([type]) => type === {message_type!r})"
    page.wait_for_function(js, timeout=WAIT_MS)


def test_a_failed_run_is_retried_from_the_failed_node_and_a_finished_run_scrubbed(
    serve: Callable[..., Server], examples: Settings, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    server = serve(examples)
    page = open_page()
    go(page, server, "/#wf=failing")
    expect_live(page, "websocket")
    page.get_by_test_id("run-button").click()
    expect_run(page, "error")
    original = page.get_by_test_id("run-status").get_attribute("data-execution-id")
    expect(page.get_by_test_id("retry-panel")).to_be_visible()
    expect(page.get_by_test_id("retry-from")).to_contain_text("Check")
    fixed = httpx.get(f"{server.url}/agents/workflows/failing", timeout=10).json()
    fixed["nodes"][1] = {"name": "Check", "type": "set", "parameters": {"values": {"ok": 1}}}
    assert httpx.put(f"{server.url}/agents/workflows/failing", json=fixed, timeout=10).is_success

    page.locator(f'{NODE}[data-node-name="Check"]').click()
    page.get_by_test_id("retry-from-here").click()
    state = page.get_by_test_id("retry-state")
    expect(state).to_be_focused()
    expect(state).to_have_value(re.compile(r'"Start"'))
    state.fill('{"Start": {"ticket": 42}}')
    page.get_by_test_id("retry-saved").check()
    page.get_by_test_id("retry-button").click()

    expect_run(page, "success")
    expect_nodes(page, {"Start": "success", "Check": "success", "Never": "success"})
    retry_id = page.get_by_test_id("run-status").get_attribute("data-execution-id")
    assert retry_id != original
    body = httpx.get(f"{server.url}/agents/executions/{retry_id}?include_data=1", timeout=10)
    assert body.json()["retry_of"] == original
    assert body.json()["data"]["Never"][0]["main"][0][0]["json"] == {
        "ticket": 42,
        "ok": 1,
        "reached": True,
    }
    events = httpx.get(f"{server.url}/agents/executions/{retry_id}/events", timeout=10).json()
    assert [i["message"]["data"].get("nodeName") for i in events["items"]][1] == "Check"
    row = page.locator(f'[data-testid="history-row"][data-execution-id="{retry_id}"]')
    expect(row.get_by_test_id("retry-of")).to_have_attribute("title", f"retry of {original}")

    scrubber = page.get_by_test_id("scrubber")
    expect(page.get_by_test_id("time-travel")).to_be_visible()
    scrubber.focus()
    page.keyboard.press("Home")
    expect(page.get_by_test_id("scrubber-label")).to_contain_text("executionStarted")
    expect_nodes(page, {"Start": "success", "Check": "pending", "Never": "pending"})
    page.keyboard.press("ArrowRight")
    expect(page.get_by_test_id("scrubber-label")).to_contain_text("nodeExecuteBefore · Check")
    expect_nodes(page, {"Start": "success", "Check": "running", "Never": "pending"})
    page.screenshot(path=tmp_path / "retry-scrubbed.png")
    page.keyboard.press("End")
    expect(page.get_by_test_id("scrubber-label")).to_contain_text("executionFinished")
    expect_nodes(page, {"Start": "success", "Check": "success", "Never": "success"})


def test_every_module_is_served_as_javascript_and_stays_on_the_page_origin(
    serve: Callable[..., Server], settings: Settings
) -> None:
    server = serve(settings)
    page = httpx.get(f"{server.url}/", timeout=10).text
    assert '<script type="module" src="/static/main.js"></script>' in page
    assert all(path.is_file() for path in STATIC_DIR.iterdir())  # package-data: static/*
    modules = sorted(STATIC_DIR.glob("*.js"))
    for module in modules:
        response = httpx.get(f"{server.url}/static/{module.name}", timeout=10)
        assert response.status_code == 200
        assert "javascript" in response.headers["content-type"]
        assert response.headers["x-content-type-options"] == "nosniff"
        imports = re.findall(r'^import .* from "([^"]+)";$', response.text, re.MULTILINE)
        assert all((STATIC_DIR / name).is_file() for name in imports), (module.name, imports)
        assert not re.findall(r"(?:https?|wss?)://(?!www\.w3\.org/2000/svg)", response.text)
    push_module = (STATIC_DIR / "push.js").read_text()
    assert not re.search(r"^import ", push_module, re.MULTILINE)  # importable on its own
    assert not re.search(r"\bdocument\b|\bwindow\b", push_module)  # no DOM


def test_push_module_alone_in_a_worker_receives_a_run_in_order(
    serve: Callable[..., Server], settings: Settings, open_page: Callable[..., Page]
) -> None:
    server = serve(settings)
    server.create_workflow(stepwise("stepwise"))
    page = open_page()
    blank_page(page, server)
    # A dedicated worker has no DOM at all: the module must not need one.
    page.evaluate(
        """(origin) => {
        window.__got = [];
        const source = `
          import { PushConnection } from "${origin}/static/push.js";
          const push = new PushConnection({
            pushRef: "worker-ref", baseUrl: "${origin}",
            onMessage: (m) => postMessage(["message", m.type, m.meta?.id, m.data?.nodeName]),
            onState: (s) => postMessage(["state", s.state, s.transport]),
          });
          push.start();`;
        const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
        new Worker(url, { type: "module" }).onmessage = (e) => window.__got.push(e.data);
      }""",
        server.url,
    )
    page.wait_for_function(
        "window.__got.some(([k, s, t]) => k === 'state' && s === 'live' && t === 'websocket')"
    )
    server.run("stepwise", push_ref="worker-ref")
    page.wait_for_function("window.__got.some(([k, type]) => type === 'executionFinished')")

    got = [entry for entry in page.evaluate("window.__got") if entry[0] == "message"]
    types = [entry[1] for entry in got]
    assert types[0] == "executionStarted" and types[-1] == "executionFinished", types
    assert [entry[2] for entry in got] == list(range(1, len(got) + 1))  # every meta.id, once
    after_data = [entry[3] for entry in got if entry[1] == "nodeExecuteAfterData"]
    assert after_data == ["Start", "Fetch", "Think", "Reply"]  # binary frames decoded


def test_push_module_on_the_sse_fallback_moves_back_to_websocket_without_loss(
    serve: Callable[..., Server], settings: Settings, open_page: Callable[..., Page]
) -> None:
    server = serve(settings)
    server.create_workflow(
        chain(
            node("Start"),
            node("Ask", "wait"),
            node("Reply", "set", values={"done": True}),
            name="pause",
            id="pause",
        )
    )
    page = open_page(init_scripts=(GATED_WEBSOCKET,))
    blank_page(page, server)
    page.evaluate(START_PUSH, {"pushRef": "fallback-ref", "options": {"wsRetryMs": 100}})
    page.wait_for_function("window.__states.some((s) => s.state === 'live')")
    live = page.evaluate("window.__states.find((s) => s.state === 'live')")
    assert live["transport"] == "sse"
    assert live["fallback"]["kind"] == "closed" and live["fallback"]["code"] == 1006

    execution_id = server.run("pause", push_ref="fallback-ref")
    wait_for_type(page, "executionWaiting")
    page.evaluate("window.__allowWebSocket = true")
    page.wait_for_function(
        "window.__states.some((s) => s.state === 'live' && s.transport === 'websocket')"
    )
    resume = httpx.post(
        f"{server.url}/agents/executions/{execution_id}/resume", json={"value": 1}, timeout=10
    )
    assert resume.status_code == 202, resume.text
    wait_for_type(page, "executionFinished")

    got = page.evaluate("window.__got")
    assert [last_id for _, last_id, _ in got] == list(range(1, len(got) + 1))  # no gap, no dup
    waited = [m[0] for m in got].index("executionWaiting")
    assert {transport for *_, transport in got[: waited + 1]} == {"sse"}
    assert {transport for *_, transport in got[waited + 1 :]} == {"websocket"}
    states = page.evaluate("window.__states")
    assert states[-1]["state"] == "live" and states[-1]["fallback"] is None


def test_push_module_reports_a_refused_api_key_as_a_final_typed_close(
    serve: Callable[..., Server], settings: Settings, open_page: Callable[..., Page]
) -> None:
    server = serve(msgspec.structs.replace(settings, api_keys=("sesame",)))
    page = open_page()
    blank_page(page, server)
    page.evaluate(START_PUSH, {"pushRef": "keyless", "options": {}})
    page.wait_for_function("window.__states.some((s) => s.state === 'offline')")

    states = page.evaluate("window.__states")
    assert [s["state"] for s in states] == ["connecting", "live", "offline"]  # no retry
    drop = states[-1]["drop"]
    assert (drop["kind"], drop["code"], drop["final"]) == ("unauthorized", 4401, True)


AGENT = Path(__file__).resolve().parents[2] / "examples" / "agent.json"
ANSWER_TEXT = json.loads(AGENT.read_text())["nodes"][2]["parameters"]["response"]


def test_a_running_node_shows_its_streamed_text_and_progress_before_it_finishes(
    serve: Callable[..., Server], examples: Settings, open_page: Callable[..., Page]
) -> None:
    """SPEC §8: the agent example's python node reports progress, its llm node streams."""
    server = serve(examples)
    page = open_page()
    go(page, server, "/#wf=agent")
    expect_live(page, "websocket")
    page.get_by_test_id("run-button").click()

    research = page.locator(f'{NODE}[data-node-name="Research"]')
    expect(research.get_by_test_id("node-live")).to_contain_text('"step"', timeout=WAIT_MS)
    answer = page.locator(f'{NODE}[data-node-name="Answer"]')
    # The excerpt is the end of the text so far: some words of the answer, while it runs.
    excerpt = answer.get_by_test_id("node-live")
    expect(excerpt).to_have_text(re.compile(r"\w"), timeout=WAIT_MS)
    assert answer.get_attribute("data-status") == "running"  # the text came before the end
    assert str(excerpt.text_content()).strip("…").split()[-1] in ANSWER_TEXT
    answer.click()
    panel = page.get_by_test_id("node-stream")
    expect(panel).to_contain_text("Thanks for asking", timeout=WAIT_MS)
    assert answer.get_attribute("data-status") == "running"

    expect_run(page, "success")
    expect(answer.get_by_test_id("node-live")).to_have_text("")
    expect(panel).to_contain_text("Anything else I can help with?")
    expect(page.get_by_test_id("node-output")).to_contain_text("Anything else I can help with?")
