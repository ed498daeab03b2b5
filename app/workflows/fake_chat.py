"""``FakeChat``: the ``llm`` node's ``fake`` model (SPEC §8), a real LangChain chat model that
needs no network, so its tokens flow through LangGraph's ``messages`` stream mode exactly
like a provider's.

Its answer is ``response`` (default: the last human message), streamed one word at a time,
each word with the whitespace before it, ``delay_ms`` apart. The chunks, concatenated, are
the answer exactly.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

#: A word with the whitespace before it; trailing whitespace is a piece of its own.
_WORD = re.compile(r"\s*\S+|\s+$")


def words(text: str) -> list[str]:
    """``text`` in the pieces the fake model streams; ``"".join(words(t)) == t``."""
    return _WORD.findall(text)


class FakeChat(BaseChatModel):
    response: str | None = None
    delay_ms: int = 0

    @property
    def _llm_type(self) -> str:
        return "graphpush-fake"

    def _answer(self, messages: list[BaseMessage]) -> str:
        if self.response is not None:
            return self.response
        asked = [m for m in messages if isinstance(m, HumanMessage)]
        return str(asked[-1].content) if asked else ""

    def _usage(self, messages: list[BaseMessage], answer: str) -> UsageMetadata:
        asked = sum(len(str(m.content).split()) for m in messages)
        given = len(words(answer))
        return UsageMetadata(input_tokens=asked, output_tokens=given, total_tokens=asked + given)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        answer = self._answer(messages)
        message = AIMessage(content=answer, usage_metadata=self._usage(messages, answer))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield from self._chunks(messages)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for i, chunk in enumerate(self._chunks(messages)):
            if i and self.delay_ms:
                await asyncio.sleep(self.delay_ms / 1000)
            yield chunk

    def _chunks(self, messages: list[BaseMessage]) -> Iterator[ChatGenerationChunk]:
        answer = self._answer(messages)
        pieces = words(answer)
        for i, piece in enumerate(pieces):
            usage = self._usage(messages, answer) if i == len(pieces) - 1 else None
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece, usage_metadata=usage))
