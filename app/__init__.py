"""graphpush: run LangGraph workflows and stream every step over WebSocket and SSE."""
