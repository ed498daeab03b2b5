// @ts-check
// A tour of the client against a server with the example workflows loaded
// (`graphpush serve`): run, follow, resume, cancel, retry, subscribe. Type-checked by `tsc`.
import { Graphpush, GraphpushError } from "./graphpush.js";

/** @param {string} baseUrl e.g. "http://127.0.0.1:8000" */
export async function tour(baseUrl) {
  const client = new Graphpush({ baseUrl });

  // One channel for every run started with its pushRef: a WebSocket, SSE when a WebSocket
  // cannot be had (and back), reconnecting with backoff and resuming from its last id.
  const channel = client.connect({
    onState: (state) => console.log(state.state, "over", state.transport),
    onClose: (reason) => console.log(reason.kind, reason.why, reason.final ? "(final)" : ""),
  });

  // 1. Run a workflow and read its messages as they come.
  const { execution_id: linear } = await client.run("linear", {
    input: { name: "Ada" },
    pushRef: channel.pushRef,
  });
  for await (const message of channel) {
    if (message.type === "nodeExecuteAfter") {
      console.log(message.data.nodeName, message.data.data.executionStatus);
    }
    if (message.type === "executionFinished" && message.data.executionId === linear) {
      console.log("finished:", message.data.status, "last id", message.meta?.id);
      break;
    }
  }

  // 2. A run that waits for approval: resume it once it is waiting (durably).
  const { execution_id: approval } = await client.run("approval", { pushRef: channel.pushRef });
  for await (const message of channel) {
    if (message.type === "executionWaiting") await client.resume(approval, { approved: true });
    if (message.type === "executionFinished" && message.data.executionId === approval) break;
  }

  // 3. Cancel a slow run; errors are typed (status, and the code of the error body).
  const { execution_id: slow } = await client.run("slow", { pushRef: channel.pushRef });
  await client.cancel(slow);
  try {
    await client.run("no-such-workflow");
  } catch (error) {
    if (error instanceof GraphpushError) console.log(error.status, error.code); // 404 not_found
  }

  // 4. Retry a finished run (from where it failed, or all of it after a success).
  const retried = await client.retry(linear, { pushRef: channel.pushRef });
  console.log("retried as", retried.execution_id, retried.status);

  // 5. Follow a run started elsewhere: replay it from the start on this channel...
  await channel.subscribeExecution(linear, { after: 0 });
  // ...or on its own stream, from any seq.
  for await (const message of client.followExecution(linear, { after: 2 })) {
    console.log("replayed", message.type);
  }

  // 6. Reconnect later (another page, after a reload) without losing a message.
  const lastEventId = channel.lastEventId;
  channel.close();
  const again = client.connect({ pushRef: channel.pushRef, lastEventId });
  again.close();
}
