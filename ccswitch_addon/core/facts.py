"""What a request says about itself: model, subagent, thinking, size, conversation.

Routes and affinity ask these questions of every routed request, so each answer is worked
out only when asked and at most once, and the cheap places are looked at first: headers,
then the top-level ``model`` member (coding tools put it first), then a search from the end
(the tools send ``system``, ``thinking`` and ``reasoning`` after the growing messages); the
whole body is parsed only when that leaves a doubt, and for a conversation id that no
header carries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from ccswitch_addon.core.rewrite import top_level_model
from ccswitch_addon.wire.api import Api

__all__ = ["Facts", "conversation_of_user_id"]

_BILLING = b'"x-anthropic-billing-header:'
_GEMINI_MODEL = re.compile(r"/models/([^/:?]+):")
_SESSION_SUFFIX = re.compile(r"_session_([0-9A-Za-z-]{8,})$")  # Claude Code 1.x user_id
_TOKEN_BYTES = 4  # an estimate of the input tokens: four bytes of body a token
_UNSET: Any = object()
_DECODER = json.JSONDecoder()


def conversation_of_user_id(user_id: object) -> str | None:
    """The session in Claude Code's ``metadata.user_id``: a JSON string in 2.x
    (``{"device_id", "account_uuid", "session_id"}``), ``user_…_session_<uuid>`` before."""
    if not isinstance(user_id, str) or not user_id:
        return None
    if user_id.startswith("{"):
        try:
            inner = json.loads(user_id)
        except ValueError:
            return None
        session = inner.get("session_id") if isinstance(inner, dict) else None
        return session if isinstance(session, str) and session else None
    match = _SESSION_SUFFIX.search(user_id)
    return match.group(1) if match else None


class Facts:
    """One request's answers to the routing questions, each computed on first use."""

    __slots__ = ("_conversation", "_doc", "_headers", "_model", "api", "body", "headers", "path")

    def __init__(
        self,
        api: Api,
        path: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes | None,
    ) -> None:
        self.api = api
        self.path = path
        self.headers = headers
        self.body = body or b""
        self._doc: Any = _UNSET
        self._headers: dict[bytes, bytes] | None = None
        self._model: Any = _UNSET
        self._conversation: Any = _UNSET

    def header(self, name: str) -> str | None:
        """The first value of a header (``name`` in lower case)."""
        found = self._headers
        if found is None:  # one pass over the headers, first value of each name kept
            found = self._headers = {}
            for key, value in self.headers:
                found.setdefault(key.lower(), value)
        raw = found.get(name.encode())
        return raw.decode("latin-1") if raw is not None else None

    def document(self) -> dict[str, Any]:
        """The JSON body, parsed once; {} when it is not a JSON object."""
        if self._doc is _UNSET:
            try:
                parsed = json.loads(self.body) if self.body else {}
            except (ValueError, RecursionError):
                parsed = {}
            self._doc = parsed if isinstance(parsed, dict) else {}
        doc: dict[str, Any] = self._doc
        return doc

    @property
    def model(self) -> str | None:
        """The model the tool asked for (Gemini names it in the path)."""
        if self._model is _UNSET:
            self._model = self._find_model()
        model: str | None = self._model
        return model

    def _find_model(self) -> str | None:
        if self.api is Api.GEMINI:
            match = _GEMINI_MODEL.search(self.path)
            return match.group(1) if match else None
        at = self.body.find(b'"model"')
        if at < 0:
            return None
        # Coding tools put the model first: decode only the head of a long context, and the
        # whole body only when the members before the model run past it.
        for text in (self.body[: at + 512].decode("utf-8", "replace"), None):
            try:
                found = top_level_model(text if text is not None else self.body.decode("utf-8"))
            except (ValueError, RecursionError):
                continue
            return found[2] if found is not None and isinstance(found[2], str) else None
        return None

    @property
    def subagent(self) -> bool:
        """Claude Code marks a subagent's request in the billing line at the head of its
        system prompt; Codex sends ``x-openai-subagent``."""
        if self.header("x-openai-subagent") is not None:
            return True
        # From the end: Claude Code sends system after the growing messages, so the search
        # runs over the tools only, and a message quoting the line is not taken for it.
        at = self.body.rfind(_BILLING)
        if at < 0:
            return False
        end = self.body.find(b'"', at + len(_BILLING))
        return self.body.find(b"cc_is_subagent", at, end if end > 0 else None) >= 0

    @property
    def tokens(self) -> int:
        """The request's input tokens, estimated from the body's size."""
        return len(self.body) // _TOKEN_BYTES

    @property
    def thinking(self) -> bool:
        """The request asks for thinking (Anthropic), reasoning (OpenAI) or a thinking
        budget (Gemini)."""
        if self.api is Api.ANTHROPIC:
            thinking = self._member("thinking")
            return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
        if self.api is Api.OPENAI:
            reasoning = self._member("reasoning")
            if isinstance(reasoning, dict) and reasoning.get("effort") not in (None, "none"):
                return True
            return self.document().get("reasoning_effort") not in (None, "none")
        config = self._member("generationConfig")
        budget = config.get("thinkingConfig") if isinstance(config, dict) else None
        if isinstance(budget, dict):
            return budget.get("thinkingBudget", -1) != 0 or bool(budget.get("includeThoughts"))
        return False

    def _member(self, key: str) -> Any:
        """A top-level member whose value is an object, found from the end without parsing
        the body: the tools send these after the long messages. Anything less clear (the
        name inside a message, a value that is no object) is read from the parsed body."""
        name = b'"' + key.encode() + b'"'
        at = self.body.rfind(name)
        if at < 0:
            return None  # nowhere in the body
        if self._doc is _UNSET:
            rest = self.body[at + len(name) : at + len(name) + 4096].lstrip()
            if rest.startswith(b":"):
                text = rest[1:].lstrip().decode("utf-8", "replace")
                try:
                    value, _ = _DECODER.raw_decode(text)
                except ValueError:
                    value = None
                if isinstance(value, dict):
                    return value
        return self.document().get(key)

    @property
    def conversation(self) -> str | None:
        """The conversation this request belongs to, or None (no affinity)."""
        if self._conversation is _UNSET:
            self._conversation = self._find_conversation()
        conversation: str | None = self._conversation
        return conversation

    def _find_conversation(self) -> str | None:
        session = self.header("x-claude-code-session-id")
        if session:
            return session
        turn = self.header("x-codex-turn-metadata")
        if turn:
            try:
                meta = json.loads(turn)
            except ValueError:
                meta = None
            value = meta.get("session_id") if isinstance(meta, dict) else None
            if isinstance(value, str) and value:
                return value
        if self.api is Api.ANTHROPIC:
            if self.body.rfind(b'"user_id"') < 0:  # rfind: CPython's faster search
                return None
            metadata = self.document().get("metadata")
            if isinstance(metadata, dict):
                return conversation_of_user_id(metadata.get("user_id"))
            return None
        if self.api is Api.OPENAI and self.body.rfind(b'"prompt_cache_key"') >= 0:
            key = self.document().get("prompt_cache_key")
            return key if isinstance(key, str) and key else None
        return None
