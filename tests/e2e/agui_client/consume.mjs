// Runs one graphpush workflow through @ag-ui/client's HttpAgent, as an AG-UI front end
// would, and prints what the client made of it as one JSON line: every event in order, the
// messages and state it assembled, and the error if the run (or the client's own checks of
// the event stream) failed.
//
//   node consume.mjs <url of POST /agents/workflows/{id}/agui> <state JSON> <messages JSON>
import { HttpAgent } from "@ag-ui/client";

const [url, state, messages] = process.argv.slice(2);
const agent = new HttpAgent({
  url,
  threadId: "thread-1",
  initialState: JSON.parse(state),
  initialMessages: JSON.parse(messages),
});
const events = [];
let failure = null;
try {
  await agent.runAgent({ runId: "run-1" }, { onEvent: ({ event }) => void events.push(event) });
} catch (error) {
  failure = String(error?.message ?? error);
}
console.log(JSON.stringify({ events, messages: agent.messages, state: agent.state, failure }));
