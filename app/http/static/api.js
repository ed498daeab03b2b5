// The REST API (SPEC §3) as the canvas uses it. No DOM.

/** A non-2xx answer: `status`, and `code`/`message` from the §3 error body. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
  }
}

const enc = encodeURIComponent;

/**
 * Calls with `Authorization: Bearer <token>` when a token is given. Every method returns
 * the decoded JSON body or throws ApiError; a 401 also calls `onUnauthorized(error)`.
 */
export class Api {
  constructor({ token = "", onUnauthorized = () => {} } = {}) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  async request(method, path, body) {
    const headers = { Accept: "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) {
      const error = new ApiError(response.status, data);
      if (response.status === 401) this.onUnauthorized(error);
      throw error;
    }
    return data;
  }

  /** Every stored workflow (the first page is all of them for the canvas). */
  async workflows() {
    return (await this.request("GET", "/agents/workflows")).items;
  }

  /** One execution with its run data (`include_data=true`). */
  execution(executionId) {
    return this.request("GET", `/agents/executions/${enc(executionId)}?include_data=true`);
  }

  /** Start a run whose push messages go to `pushRef`; answers `{execution_id, ...}`. */
  run(workflowId, input, pushRef) {
    return this.request("POST", `/agents/workflows/${enc(workflowId)}/run`, { input, push_ref: pushRef });
  }

  cancel(executionId) {
    return this.request("POST", `/agents/executions/${enc(executionId)}/cancel`);
  }

  /** Retry a finished run (SPEC §9 body); answers `{execution_id, ...}` of the new run. */
  retry(executionId, body) {
    return this.request("POST", `/agents/executions/${enc(executionId)}/retry`, body);
  }

  /** The run's logged messages: `{items: [{seq, type, message}], last_seq}`. */
  events(executionId) {
    return this.request("GET", `/agents/executions/${enc(executionId)}/events`);
  }

  resume(executionId, value) {
    return this.request("POST", `/agents/executions/${enc(executionId)}/resume`, { value });
  }
}
