// Text for people: durations, times, JSON, and the words for statuses. Pure functions.

/** Node statuses as the canvas names them ("idle": no run is shown). */
export const NODE_STATUS_TEXT = {
  idle: "not run",
  pending: "pending",
  running: "running",
  success: "success",
  error: "error",
  waiting: "waiting",
  canceled: "canceled",
};

// Run statuses are n8n's; "new" reads better as what it means.
const RUN_TEXT = { new: "queued", crashed: "crashed (process died)" };

export function runStatusText(status) {
  return RUN_TEXT[status] ?? status;
}

export function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
}

export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay ? date.toLocaleTimeString() : date.toLocaleString();
}

export function truncate(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function pretty(value, max = 6000) {
  return truncate(JSON.stringify(value, null, 2) ?? "undefined", max);
}

/** `{ok: true, value}` or `{ok: false, error}` (the parser's message). */
export function parseJson(text) {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    return { ok: false, error: error.message };
  }
}
