"""The built-in ``llm`` node type (SPEC §8): one chat-model call whose tokens stream live.

Parameters: ``model`` (``"fake"`` or ``"<provider>:<model>"``), ``prompt``, ``system``, and
for ``fake`` its ``response`` and ``delay_ms``. ``prompt`` and ``system`` may name run state
as ``{input.field}`` or ``{results.NodeName.field}`` (dotted paths go deeper). A chat history
in the run input's ``messages`` (an AG-UI run's, SPEC §11) goes between ``system`` and
``prompt``.

The node calls the model like any LangGraph node would; LangGraph's ``messages`` stream
mode carries its tokens, so nothing here emits anything. Its output is ``{"text",
"messageId"}`` plus ``tool_calls`` and ``usage`` when the model gives them. Provider models
come from LangChain's ``init_chat_model`` (the ``llm`` extra, ``pip install
'graphpush[llm]'``, plus the provider's own package), never needed by graphpush itself.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
from typing import Annotated, Any

import msgspec
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    BaseMessage,
    HumanMessage,
    SystemMessage,
    convert_to_messages,
)

from app.errors import problem
from app.workflows.checks import NonEmpty, Problem, ValidationContext, check_value, join_path
from app.workflows.fake_chat import FakeChat
from app.workflows.node_types import NodeFn, NodeInfo, RunState

FAKE = "fake"
_PLACEHOLDER = re.compile(r"\{(input|results)\.([^{}]+)\}")


class LlmParams(msgspec.Struct, forbid_unknown_fields=True):
    model: NonEmpty
    prompt: str
    system: str | None = None
    response: str | None = None
    delay_ms: Annotated[int, msgspec.Meta(ge=0)] = 0


class LlmNode:
    """The ``llm`` node type (:class:`app.workflows.node_types.NodeType`)."""

    def outputs(self, parameters: dict[str, Any]) -> int:
        return 1

    def validate(
        self, parameters: dict[str, Any], path: str, ctx: ValidationContext
    ) -> list[Problem]:
        problems = check_value(parameters, LlmParams, path)
        if problems:
            return problems
        reason = unusable_model(parameters["model"])
        return [problem(join_path(path, "model"), reason)] if reason else []

    def make(self, node: NodeInfo) -> NodeFn:
        params = msgspec.convert(node.parameters, LlmParams)
        fake = FakeChat(response=params.response, delay_ms=params.delay_ms)

        async def run(item: dict[str, Any], state: RunState) -> tuple[Any, int]:
            model = fake if params.model == FAKE else _provider_model(params.model)
            answer = await model.ainvoke(prompt_messages(params, state))
            return _output(answer), 0

        return run


def unusable_model(model: str) -> str | None:
    """Why ``model`` cannot be used here, or None."""
    if model == FAKE:
        return None
    provider, _, name = model.partition(":")
    if not provider or not name:
        return f"expected 'fake' or '<provider>:<model>', got {model!r}"
    if importlib.util.find_spec("langchain") is None:
        return f"provider models need the llm extra (pip install 'graphpush[llm]'): {model!r}"
    providers: dict[str, tuple[str, ...]] = getattr(
        importlib.import_module("langchain.chat_models.base"), "_BUILTIN_PROVIDERS", {}
    )
    if provider not in providers:
        return f"unknown provider {provider!r} (known: {', '.join(sorted(providers))})"
    package = providers[provider][0]
    if importlib.util.find_spec(package) is None:
        return f"provider {provider!r} needs the package {package.replace('_', '-')!r}"
    return None


@functools.lru_cache(maxsize=64)  # one client per model; a failed init is tried again
def _provider_model(model: str) -> BaseChatModel:
    init_chat_model = importlib.import_module("langchain.chat_models").init_chat_model
    chat: BaseChatModel = init_chat_model(model)
    return chat


def prompt_messages(params: LlmParams, state: RunState) -> list[BaseMessage]:
    """What the model is asked: ``system``, the run's chat history (:func:`chat_history`),
    then ``prompt`` (left out when it renders empty: the history's last message asks)."""
    messages: list[BaseMessage] = []
    if params.system:
        messages.append(SystemMessage(render(params.system, state)))
    messages += chat_history(state)
    prompt = render(params.prompt, state)
    if prompt or not messages:
        messages.append(HumanMessage(prompt))
    return messages


#: The roles of a chat history a chat model takes (AG-UI's activity and reasoning are not).
_CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
#: AG-UI's camelCase message fields and their OpenAI-style names, which LangChain reads.
_FIELDS = {"role": "role", "content": "content", "id": "id", "name": "name",
           "toolCalls": "tool_calls", "toolCallId": "tool_call_id"}  # fmt: skip


def chat_history(state: RunState) -> list[BaseMessage]:
    """The run input's ``messages`` as chat messages: AG-UI's chat history (SPEC §11: an
    AG-UI run puts its ``messages`` there), or any list of ``{"role", "content", ...}``
    messages in the OpenAI form. Messages of other roles are left out."""
    history = state.get("input", {}).get("messages")
    if not isinstance(history, list):
        return []
    chat = [
        {_FIELDS[k]: v for k, v in message.items() if k in _FIELDS}
        | {"content": message.get("content") or ""}
        for message in history
        if isinstance(message, dict) and message.get("role") in _CHAT_ROLES
    ]
    return convert_to_messages(chat)


def _output(answer: BaseMessage) -> dict[str, Any]:
    output: dict[str, Any] = {"text": str(answer.text), "messageId": answer.id}
    tool_calls = getattr(answer, "tool_calls", None)
    if tool_calls:
        output["tool_calls"] = [dict(call) for call in tool_calls]
    usage = getattr(answer, "usage_metadata", None)
    if usage:
        output["usage"] = dict(usage)
    return output


def render(template: str, state: RunState) -> str:
    """``template`` with each ``{input.a.b}`` / ``{results.Node.a}`` replaced by that value
    (objects as JSON; missing ones as empty text)."""

    def value(match: re.Match[str]) -> str:
        root, path = match.group(1), match.group(2)
        found = (
            _walk(state.get("input", {}), path.split("."))
            if root == "input"
            else _result(state.get("agent_results", {}), path)
        )
        if found is None:
            return ""
        return found if isinstance(found, str) else msgspec.json.encode(found).decode()

    return _PLACEHOLDER.sub(value, template)


def _result(results: dict[str, Any], path: str) -> Any:
    """``NodeName.field`` in ``results``; the longest node name that matches wins, so node
    names may contain dots."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        if name in results:
            return _walk(results[name], parts[cut:])
    return None


def _walk(value: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
