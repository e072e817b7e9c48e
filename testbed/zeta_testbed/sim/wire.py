"""The OpenAI wire format as the sim speaks it: requests in, bodies and SSE events out.

No I/O and no clock: parses and validates generation requests into ``Generation``
values, builds completion bodies and stream events from the ``created`` time the
caller gives, and shapes errors as OpenAI does
(``{"error": {"message", "type", "param", "code"}}``). Response ids are random, as
OpenAI's are. The aiohttp handlers that use it are in ``server``.

A prompt is counted in tokens of ``CHARS_PER_TOKEN`` characters of its text (for chat,
the messages' contents), and kept in the form the prefix cache hashes: a completion's
text or token ids as given, a chat's messages rendered in order with their roles in
ChatML, the template of many open models, ending with the assistant's turn opened as a
generation prompt does. A conversation's earlier turns are thus a prefix of its later
requests, and a shared system prompt a prefix of every request that starts with it.
"""

import itertools
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from aiohttp import web

from zeta_testbed.sim.caching import CHARS_PER_TOKEN
from zeta_testbed.sim.engine import Sequence

# The text the simulated model "generates": one word per token, cycled.
_WORDS: Final = (
    "The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "a",
    "simulated", "model", "streams", "tokens", "at", "a", "pace", "set", "by", "its",
    "batch", "so", "that", "a", "router", "has", "load", "to", "balance",
)  # fmt: skip
_TOKEN_TEXTS: Final = tuple(f" {word}" for word in _WORDS)
_TOKEN_JSON: Final = tuple(json.dumps(text).encode() for text in _TOKEN_TEXTS)
_PLACEHOLDER: Final = "\x00token\x00"

_SSE_DONE: Final = b"data: [DONE]\n\n"

Kind = Literal["chat", "completion"]


class ApiError(Exception):
    """A request that gets an OpenAI-style error instead of a completion."""

    def __init__(
        self, status: int, message: str, *, kind: str, code: str, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.code = code
        self.param = param

    def response(self) -> web.Response:
        return error_response(
            self.status, self.message, kind=self.kind, code=self.code, param=self.param
        )


def error_response(
    status: int, message: str, *, kind: str, code: str, param: str | None = None
) -> web.Response:
    error = {"message": message, "type": kind, "param": param, "code": code}
    return json_response({"error": error}, status=status)


def json_response(data: object, *, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def bad_request(message: str, *, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, kind="invalid_request_error", code=code, param=param)


@dataclass(frozen=True, slots=True)
class Generation:
    """The parts of a generation request the sim acts on."""

    kind: Kind
    model: str
    prompt_tokens: int
    prompt: str | tuple[int, ...]
    """What the prefix cache hashes: text (chat rendered in ChatML) or token ids."""
    max_tokens: int | None
    stream: bool
    include_usage: bool
    priority: int = 0
    """vLLM's request priority (lower first); only a priority-scheduling engine takes
    one other than 0."""


async def read_json_object(request: web.Request) -> dict[str, object]:
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError as exc:  # also covers undecodable bytes
        raise bad_request(f"Request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise bad_request("Request body must be a JSON object.", code="invalid_json")
    return body


def _content_text(content: object, param: str) -> str:
    """The text of a message ``content``: a string, parts with ``text``, or null."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if not isinstance(part, dict):
                raise bad_request("Content parts must be objects.", param=param)
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
        return "".join(texts)
    raise bad_request("Content must be a string, a list of parts, or null.", param=param)


def _tokens_of_chars(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def _prompt_of_messages(messages: object) -> tuple[int, str]:
    """Prompt tokens (of the contents alone, as the sim always counted) and the rendering."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty list.", param="messages")
    chars = 0
    rendered: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            raise bad_request("Each message must be an object.", param="messages")
        text = _content_text(message.get("content"), "messages")
        chars += len(text)
        role = message.get("role")
        rendered.append(f"<|im_start|>{role if isinstance(role, str) else ''}\n{text}<|im_end|>\n")
    rendered.append("<|im_start|>assistant\n")
    return _tokens_of_chars(chars), "".join(rendered)


def _prompt_of_prompt(prompt: object) -> tuple[int, str | tuple[int, ...]]:
    # The forms OpenAI accepts: text, a batch of texts, token ids, a batch of token ids.
    # A batch is simulated as one prompt of the combined length.
    if isinstance(prompt, str):
        return _tokens_of_chars(len(prompt)), prompt
    if isinstance(prompt, list) and prompt:
        if all(isinstance(item, str) for item in prompt):
            text = "".join(prompt)
            return _tokens_of_chars(len(text)), text
        if all(isinstance(item, int) for item in prompt):
            return len(prompt), tuple(prompt)
        if all(isinstance(item, list) for item in prompt):
            ids = tuple(itertools.chain.from_iterable(prompt))
            # Ids that are not integers are counted but never cached: they cannot be hashed.
            return len(ids), ids if all(isinstance(i, int) for i in ids) else ()
    raise bad_request("'prompt' must be a string, a list of strings, or token ids.", param="prompt")


def _optional_positive_int(body: Mapping[str, object], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_request(f"'{key}' must be a positive integer.", param=key)
    return value


def parse_generation(
    kind: Kind, body: Mapping[str, object], accepted_models: tuple[str, ...]
) -> Generation:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_request("'model' must be a string.", param="model")
    if model is None or model not in accepted_models:
        # A missing model is refused too: whatever routes here must name the model it chose.
        raise ApiError(
            404,
            "No model given." if model is None else f"The model `{model}` does not exist.",
            kind="invalid_request_error",
            code="model_not_found",
            param="model",
        )
    prompt: str | tuple[int, ...]
    if kind == "chat":
        prompt_tokens, prompt = _prompt_of_messages(body.get("messages"))
        max_tokens = _optional_positive_int(body, "max_completion_tokens")
        if max_tokens is None:
            max_tokens = _optional_positive_int(body, "max_tokens")
    else:
        prompt_tokens, prompt = _prompt_of_prompt(body.get("prompt"))
        max_tokens = _optional_positive_int(body, "max_tokens")
    n = body.get("n", 1)
    if n not in (1, None) or isinstance(n, bool):
        raise bad_request("Only n=1 is supported.", param="n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool | None):
        raise bad_request("'stream' must be a boolean.", param="stream")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise bad_request("'stream_options' must be an object.", param="stream_options")
        include_usage = options.get("include_usage") is True
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int | None):
        raise bad_request("'priority' must be an integer.", param="priority")
    return Generation(
        kind=kind,
        model=model,
        prompt_tokens=prompt_tokens,
        prompt=prompt,
        max_tokens=max_tokens,
        stream=bool(stream),
        include_usage=include_usage,
        priority=priority or 0,
    )


def _usage(seq: Sequence) -> dict[str, int]:
    return {
        "prompt_tokens": seq.prompt_tokens,
        "completion_tokens": seq.generated,
        "total_tokens": seq.prompt_tokens + seq.generated,
    }


def generated_text(tokens: int) -> str:
    """The text the sim generates in ``tokens`` tokens: the same for every request, so a
    client that sends an answer back in its next turn sends exactly this."""
    count = len(_TOKEN_TEXTS)
    return "".join(_TOKEN_TEXTS[i % count] for i in range(tokens))


def completion_body(gen: Generation, seq: Sequence, created: int) -> dict[str, object]:
    """The whole (non-streamed) answer; ``created`` is Unix seconds."""
    choice: dict[str, object] = {
        "index": 0,
        "logprobs": None,
        "finish_reason": seq.finish_reason.value,
    }
    if gen.kind == "chat":
        choice["message"] = {"role": "assistant", "content": generated_text(seq.generated)}
        response_id, obj = f"chatcmpl-{uuid.uuid4().hex}", "chat.completion"
    else:
        choice["text"] = generated_text(seq.generated)
        response_id, obj = f"cmpl-{uuid.uuid4().hex}", "text_completion"
    return {
        "id": response_id,
        "object": obj,
        "created": created,
        "model": gen.model,
        "choices": [choice],
        "usage": _usage(seq),
    }


class ChunkWriter:
    """Encodes one stream's SSE events; token events are prebuilt byte templates."""

    def __init__(self, gen: Generation, created: int) -> None:
        self.kind = gen.kind
        self.include_usage = gen.include_usage
        if gen.kind == "chat":
            self.base: dict[str, object] = {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion.chunk",
                "created": created,
                "model": gen.model,
            }
            token_choice: dict[str, object] = {"index": 0, "delta": {"content": _PLACEHOLDER}}
        else:
            self.base = {
                "id": f"cmpl-{uuid.uuid4().hex}",
                "object": "text_completion",
                "created": created,
                "model": gen.model,
            }
            token_choice = {"index": 0, "text": _PLACEHOLDER}
        token_choice.update(logprobs=None, finish_reason=None)
        template = self._encode(token_choice).split(json.dumps(_PLACEHOLDER).encode())
        self.prefix, self.suffix = template

    def _encode(self, *choices: dict[str, object], **extra: object) -> bytes:
        event = {**self.base, "choices": list(choices), **extra}
        return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"

    def opening(self) -> bytes:
        """The role-carrying first event of a chat stream (nothing for completions)."""
        if self.kind != "chat":
            return b""
        delta = {"role": "assistant", "content": ""}
        return self._encode({"index": 0, "delta": delta, "logprobs": None, "finish_reason": None})

    def tokens(self, start: int, stop: int) -> bytes:
        """Events for tokens ``start`` to ``stop - 1``, in one buffer."""
        count = len(_TOKEN_JSON)
        prefix, suffix = self.prefix, self.suffix
        return b"".join(prefix + _TOKEN_JSON[i % count] + suffix for i in range(start, stop))

    def closing(self, seq: Sequence) -> bytes:
        """The finish event, the usage event if asked for, and ``[DONE]``."""
        reason = seq.finish_reason.value
        if self.kind == "chat":
            choice: dict[str, object] = {
                "index": 0,
                "delta": {},
                "logprobs": None,
                "finish_reason": reason,
            }
        else:
            choice = {"index": 0, "text": "", "logprobs": None, "finish_reason": reason}
        events = [self._encode(choice)]
        if self.include_usage:
            events.append(self._encode(usage=_usage(seq)))
        events.append(_SSE_DONE)
        return b"".join(events)

    def aborted(self) -> bytes:
        """An OpenAI error event for a stream cut short by shutdown, then ``[DONE]``."""
        error = {
            "message": "The server is shutting down.",
            "type": "server_error",
            "param": None,
            "code": "shutdown",
        }
        body = json.dumps({"error": error}, separators=(",", ":")).encode()
        return b"data: " + body + b"\n\n" + _SSE_DONE
