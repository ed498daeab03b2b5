// Types of graphpush.js. The wire types (messages, commands, REST bodies) are generated from
// the server's Structs into schemas.d.ts; this file types the client around them.

import type {
  BulkCanceled,
  ExecutionDto,
  ExecutionList,
  EventLog,
  CancelAccepted,
  PushMessage,
  ReplyData,
  RetryBody,
  RunAccepted,
  StoredWorkflow,
  StreamMessage,
  Workflow,
} from "./schemas";

export * from "./schemas";

/** What ended a connection (docs/asyncapi.yaml `x-close-codes`). */
export type CloseKind =
  | "replaced" // 1000: another connection took this pushRef
  | "going_away" // 1001: the server is shutting down
  | "refused" // 1008: a cross-site Origin or a bad pushRef
  | "too_big" // 1009: a command frame over 64 KiB
  | "server_error" // 1011: e.g. a missed heartbeat
  | "slow_consumer" // 4008: the outbound buffer filled up
  | "unauthorized" // 4401: no valid API key
  | "closed" // another code (1006: the network dropped)
  | "stream_ended" // SSE: the stream ended; the browser resumes it
  | "stream_refused" // SSE: the stream could not be opened
  | "client_closed"; // close() was called

export interface CloseReason {
  kind: CloseKind;
  /** The WebSocket close code; null for SSE and for close(). */
  code: number | null;
  reason: string;
  /** A short account for people, e.g. "close 4008: slow consumer: outbound buffer full". */
  why: string;
  /** Reconnecting cannot help: the channel went offline. */
  final: boolean;
}

export interface ConnectionState {
  state: "connecting" | "live" | "reconnecting" | "offline";
  transport: "websocket" | "sse";
  /** Reconnect attempts since the channel was last live. */
  attempt: number;
  /** Why the last connection ended (null until one did). */
  drop: CloseReason | null;
  /** The wait before the current reconnect attempt. */
  retryInMs: number | null;
  /** Why the WebSocket was given up, while on the SSE fallback. */
  fallback: CloseReason | null;
}

/** A push message as received: on WebSocket, `meta.id` is its connection cursor. */
export type Received<M = PushMessage> = M & { meta?: { id: number } };

/** A non-2xx answer (`status`), or a refused command (`status` 0). */
export class GraphpushError extends Error {
  constructor(status: number, body: unknown);
  status: number;
  /** The error code, e.g. "not_found", "validation_failed", "illegal_transition". */
  code: string;
  details: unknown;
}

export interface ClientOptions {
  /** Default: the page's origin. */
  baseUrl?: string | URL;
  /** An API key, when the server has keys: `Authorization` on REST, `?token=` on push. */
  token?: string;
  fetch?: typeof fetch;
}

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, string | number | boolean | null | undefined>;
  headers?: Record<string, string>;
}

export interface ChannelOptions {
  /** Default: a new one, 10 lowercase alphanumerics as n8n makes them. */
  pushRef?: string;
  /** "auto": WebSocket, SSE when a WebSocket cannot open, back to WebSocket when one can. */
  transport?: "auto" | "ws" | "sse";
  /** Resume after this message id (e.g. kept across a page reload). */
  lastEventId?: number | null;
  /** How long to stay on the SSE fallback before trying a WebSocket again (ms). */
  wsRetryMs?: number;
  /** Reads the channel instead of a loop: loops then get what comes from the first one on. */
  onMessage?: (message: Received) => void;
  onState?: (state: ConnectionState) => void;
  onClose?: (reason: CloseReason) => void;
}

export class Graphpush {
  constructor(options?: ClientOptions);
  readonly baseUrl: URL;
  readonly token: string;
  request<T = unknown>(method: string, path: string, options?: RequestOptions): Promise<T>;
  workflows(): Promise<StoredWorkflow[]>;
  workflow(workflowId: string): Promise<StoredWorkflow>;
  createWorkflow(workflow: Workflow): Promise<StoredWorkflow>;
  run(
    workflowId: string,
    options?: { input?: Record<string, unknown>; pushRef?: string },
  ): Promise<RunAccepted>;
  execution(executionId: string, options?: { includeData?: boolean }): Promise<ExecutionDto>;
  executions(options?: {
    workflowId?: string;
    status?: ExecutionDto["status"];
    retryOf?: string;
    limit?: number;
    offset?: number;
  }): Promise<ExecutionList>;
  events(executionId: string, options?: { after?: number }): Promise<EventLog>;
  cancel(executionId: string): Promise<CancelAccepted>;
  resume(executionId: string, value?: unknown): Promise<RunAccepted>;
  retry(
    executionId: string,
    options?: {
      fromNode?: string;
      workflow?: RetryBody["workflow"];
      state?: RetryBody["state"];
      input?: Record<string, unknown>;
      pushRef?: string;
    },
  ): Promise<RunAccepted>;
  cancelExecutions(filter: {
    workflowId?: string;
    status?: ("new" | "running" | "waiting")[];
  }): Promise<BulkCanceled>;
  connect(options?: ChannelOptions): PushChannel;
  followExecution(
    executionId: string,
    options?: { after?: number; onMessage?: (message: StreamMessage) => void },
  ): ExecutionFollower;
}

/** One pushRef channel: iterate it, or pass callbacks. */
export class PushChannel implements AsyncIterable<Received> {
  readonly pushRef: string;
  /** The last message id received: reconnect (or reload) with it as `lastEventId`. */
  readonly lastEventId: number | null;
  /** The latest state (null before the first). */
  readonly state: ConnectionState | null;
  start(): void;
  close(): void;
  subscribeExecution(executionId: string, options?: { after?: number }): Promise<ReplyData>;
  unsubscribeExecution(executionId: string): Promise<ReplyData>;
  command(type: string, data: { executionId: string; [key: string]: unknown }): Promise<ReplyData>;
  [Symbol.asyncIterator](): AsyncIterator<Received>;
}

/** One run's stream (SSE): its snapshot, then its messages, until executionFinished. */
export class ExecutionFollower implements AsyncIterable<StreamMessage> {
  close(): void;
  [Symbol.asyncIterator](): AsyncIterator<StreamMessage>;
}

export function randomPushRef(): string;
export function closeReason(code: number, reason?: string): CloseReason;
