// What the page says about itself: the push connection indicator and the banner (errors,
// and the API key form when the server asks for one).

import { $ } from "./dom.js";
import { formatDuration } from "./format.js";

const LABELS = {
  connecting: (name) => `Connecting over ${name}…`,
  live: (name) => `Live over ${name}`,
  reconnecting: (name) => `Reconnecting over ${name}…`,
  offline: () => "Disconnected",
};

// Close kinds after which push.js stops retrying, as the page explains them.
const FINAL_TEXT = {
  replaced: "replaced by a newer connection",
  refused: "refused by policy",
  unauthorized: "API key or token needed",
};

/** The detail line for a PushConnection state (see push.js onState). */
export function connectionDetail({ state, drop, retryInMs, fallback }) {
  const fellBack = fallback && `WebSocket failed (${fallback.why}), using SSE`;
  if (state === "offline") return drop?.final ? `${FINAL_TEXT[drop.kind]} (${drop.why})` : "";
  if (state === "live") return [fellBack, drop && `resumed after ${drop.why}`].filter(Boolean).join("; ");
  if (drop?.kind === "stream_ended") return "event stream ended; the browser resumes it";
  if (retryInMs !== null) return `${drop.why}; retrying in ${formatDuration(retryInMs)}`;
  return fellBack || "";
}

/** The connection indicator in the top bar. */
export class ConnectionStatus {
  constructor(box) {
    this.box = box;
    this.label = $('[data-testid="connection-label"]', box);
    this.detail = $('[data-testid="connection-detail"]', box);
  }

  show(connection) {
    const { state, transport, attempt } = connection;
    Object.assign(this.box.dataset, { state, transport, attempt: String(attempt) });
    this.label.textContent = LABELS[state]?.(transport === "sse" ? "SSE" : "WebSocket") ?? state;
    const detail = connectionDetail(connection);
    this.detail.textContent = detail;
    this.detail.title = detail;
  }
}

/** The dismissable banner; `onKey(key)` when the user submits an API key or a token. */
export class Banner {
  constructor(banner, { onKey }) {
    this.banner = banner;
    this.text = $(".banner-text", banner);
    this.keyForm = $(".key-form", banner);
    this.timer = null;
    $(".banner-close", banner).addEventListener("click", () => (banner.hidden = true));
    this.keyForm.addEventListener("submit", (event) => {
      event.preventDefault();
      onKey($("input", this.keyForm).value);
    });
  }

  /** Show `text`; it hides itself after 8 s unless sticky. */
  show(text, { sticky = false } = {}) {
    this.text.textContent = text;
    this.banner.hidden = false;
    clearTimeout(this.timer);
    if (!sticky) this.timer = setTimeout(() => (this.banner.hidden = true), 8000);
  }

  askForKey(reason) {
    this.show(`This server needs an API key or a valid access token: ${reason}`, { sticky: true });
    this.keyForm.hidden = false;
  }
}
