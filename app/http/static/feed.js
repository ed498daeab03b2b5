// The runs feed of one workflow (SPEC §11), for list views: a `runsSnapshot` (the list DTOs
// of its latest runs, newest first), then the `executionStarted`, `executionWaiting` and
// `executionFinished` of every run of it, live. No DOM.
//
//   import { followRuns } from "/static/feed.js";
//   const stop = followRuns("linear", { push, onMessage });
//
// On a live WebSocket push connection (push.js) it is a `subscribe_workflow` command: the
// feed's messages then come through that connection's onMessage, with its cursor, and resume
// with it. Otherwise it is an EventSource on `GET /agents/workflows/{id}/stream`, which the
// browser resumes with Last-Event-ID (when the server no longer holds that cursor it sends
// a new snapshot); its messages go to `onMessage`.

/**
 * Follow the runs of `workflowId`: the latest `limit` in the snapshot. Options: `push` (a
 * PushConnection), `token` (API key), `baseUrl`, `onMessage`. Returns a function that stops.
 */
export function followRuns(workflowId, { push, limit = 20, token = "", baseUrl, onMessage }) {
  if (push?.send({ type: "subscribe_workflow", data: { workflowId, limit } })) {
    return () => push.send({ type: "unsubscribe_workflow", data: { workflowId } });
  }
  const path = `/agents/workflows/${encodeURIComponent(workflowId)}/stream`;
  const url = new URL(path, baseUrl ?? globalThis.location?.href);
  url.searchParams.set("limit", String(limit));
  if (token) url.searchParams.set("token", token);
  const source = new EventSource(url);
  source.addEventListener("message", (event) => onMessage(JSON.parse(event.data)));
  return () => source.close();
}
