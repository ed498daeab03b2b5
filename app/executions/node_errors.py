"""A node failure's wire form: n8n's ``NodeOperationError`` as JSON (SPEC §4 case 2)."""

from __future__ import annotations

import traceback
from typing import Any

from app.errors import NodeFailure
from app.workflows.node_types import NodeInfo


def node_operation_error(exc: BaseException, node: NodeInfo, timestamp_ms: int) -> dict[str, Any]:
    """The JSON n8n sends in ``nodeExecuteAfter.data.error`` for a failed node."""
    message = exc.message if isinstance(exc, NodeFailure) else str(exc) or type(exc).__name__
    error: dict[str, Any] = {
        "name": "NodeOperationError",
        "message": message,
        "level": "error",
        "shouldReport": not isinstance(exc, NodeFailure),
        "tags": {},
        "context": {} if isinstance(exc, NodeFailure) else {"exceptionType": type(exc).__name__},
        "functionality": "regular",
        "timestamp": timestamp_ms,
        "node": node.to_inode(),
        "messages": [],
        "stack": "".join(traceback.format_exception(exc)).strip(),
    }
    if isinstance(exc, NodeFailure) and exc.description is not None:
        error["description"] = exc.description
    return error
