"""Reject what the OpenAI API rejects, with its status codes and wording, and build fault errors.

``RequestError`` is an error response; ``validate_request`` checks a chat completion body
(model served, messages, content parts, image URLs, parameter ranges) and
``prompt_tokens_in_window`` its length; ``script_for`` reads a request's own "loopback" script;
``fault_error`` turns a scripted status fault into the response OpenAI would send.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..core.models import model_info
from ..core.tokens import count_prompt_tokens
from .script import Script
from .structured import strict_problem

ROLES = ("system", "developer", "user", "assistant", "tool", "function")


class RequestError(Exception):
    """An OpenAI-style error response: status, one-line message, type, code, param, headers."""

    def __init__(self, status: int, message: str, *, type: str | None = "invalid_request_error",
                 code: str | int | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None,
                 wrapped: bool = True) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers or {}
        self.extra = extra or {}  # more fields of the error object (llama.cpp's n_ctx, vLLM's object)
        self.wrapped = wrapped  # False: the error object is the whole body, as vLLM sends it

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code,
                 **self.extra}
        return json.dumps({"error": error} if self.wrapped else error).encode()


def fault_error(script: Script, body: Any) -> RequestError | None:
    """The error response a status fault stands for, or None for stream faults / no fault."""
    fault = script.fault
    model = str(body.get("model")) if isinstance(body, dict) else "?"
    if fault == "rate_limit":
        wait = 1.0 if script.retry_after is None else float(script.retry_after)
        return RequestError(
            429, f"Rate limit reached for {model} in organization org-loopback on requests per min "
            f"(RPM): Limit 3, Used 3, Requested 1. Please try again in {wait:g}s.",
            type="requests", code="rate_limit_exceeded",
            headers={"retry-after": str(max(int(-(-wait // 1)), 0)),
                     "retry-after-ms": str(int(wait * 1000))})
    if fault == "server_error":
        return server_error()
    if fault == "unauthorized":
        return unauthorized()
    if fault == "context_length":
        window = model_info(model).context_window
        return context_length_error(window, window + 1)
    if fault == "model_not_found":
        return model_not_found(model)
    if fault in IMITATED_ERRORS:
        window = model_info(model).context_window
        return IMITATED_ERRORS[fault](model, window)
    if fault == "images_unsupported":
        messages = body.get("messages") if isinstance(body, dict) else None
        return images_unsupported(_first_image(messages) if isinstance(messages, list) else (0, 0))
    return None


def script_for(body: Any, queued: Callable[[], Script]) -> Script:
    """The request's own "loopback" script if its body has one (the queue untouched), else
    ``queued()``, the next queued one: how a chat request and a batch line alike find theirs."""
    if isinstance(body, dict) and "loopback" in body:
        try:
            return Script.from_mapping(body["loopback"])
        except (TypeError, ValueError) as error:
            raise RequestError(400, f"Invalid 'loopback' field: {error}", param="loopback") from None
    return queued()


def prompt_tokens_in_window(messages: Sequence[dict[str, Any]], model: str,
                            tools: Sequence[dict[str, Any]] | None = None) -> int:
    """The prompt's tokens (``messages`` and ``tools``) as ``model`` bills them; a prompt longer
    than its context window is rejected as OpenAI rejects it."""
    prompt_tokens = count_prompt_tokens(messages, model, tools)
    window = model_info(model).context_window
    if prompt_tokens > window:
        raise context_length_error(window, prompt_tokens)
    return prompt_tokens


def _litellm_context(model: str, window: int) -> RequestError:
    return RequestError(
        400, "litellm.ContextWindowExceededError: litellm.BadRequestError: ContextWindowExceededError: "
        f"OpenAIException - This model's maximum context length is {window} tokens. However, your messages "
        f"resulted in {window + 1} tokens. Please reduce the length of the messages.",
        type=None, code="400")


def _llamacpp_context(model: str, window: int) -> RequestError:
    return RequestError(400, "the request exceeds the available context size, try increasing it",
                        type="exceed_context_size_error", code=400,
                        extra={"n_prompt_tokens": window + 1, "n_ctx": window})


def _vllm_context(model: str, window: int) -> RequestError:
    return RequestError(
        400, f"This model's maximum context length is {window} tokens. However, you requested {window + 1} "
        f"tokens ({window + 1} in the messages, 0 in the completion). Please reduce the length of the "
        "messages or completion.", type="BadRequestError", code=400, extra={"object": "error"}, wrapped=False)


def _ollama_model_not_found(model: str, window: int) -> RequestError:
    return RequestError(404, f'model "{model}" not found, try pulling it first', type="api_error")


# fault -> the error response another OpenAI-compatible server sends, in its own wording
IMITATED_ERRORS = {"context_length_litellm": _litellm_context, "context_length_llamacpp": _llamacpp_context,
                   "context_length_vllm": _vllm_context, "model_not_found_ollama": _ollama_model_not_found}


def images_unsupported(where: tuple[int, int]) -> RequestError:
    """What OpenAI answers when a model without vision gets an image part (no error code)."""
    return RequestError(400, "Invalid content type. image_url is only supported by certain models.",
                        param=f"messages.[{where[0]}].content.[{where[1]}].type")


def _first_image(messages: list[Any]) -> tuple[int, int]:
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict) and part.get("type") == "image_url":
                return i, j
    return 0, 0


def server_error() -> RequestError:
    return RequestError(500, "The server had an error while processing your request. Sorry about that!",
                        type="server_error")


def unauthorized() -> RequestError:
    # Never echo any part of the key back: the house rule is that keys are never printed.
    return RequestError(401, "Incorrect API key provided. You can find your API key at "
                        "https://platform.openai.com/account/api-keys.", code="invalid_api_key")


def model_not_found(model: str) -> RequestError:
    return RequestError(404, f"The model `{model}` does not exist or you do not have access to it.",
                        code="model_not_found")


def context_length_error(window: int, prompt_tokens: int) -> RequestError:
    return RequestError(400, f"This model's maximum context length is {window} tokens. However, your "
                        f"messages resulted in {prompt_tokens} tokens. Please reduce the length of "
                        "the messages.", param="messages", code="context_length_exceeded")


def validate_request(body: Any, served_models: Iterable[str], *, strict: bool = True) -> None:
    """Reject what OpenAI rejects, with its wording: missing fields, bad roles, broken images."""
    if not isinstance(body, dict):
        raise RequestError(400, "The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(400, "you must provide a model parameter", param="model")
    if model not in served_models:
        raise model_not_found(model)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "Missing required parameter: 'messages'.", param="messages",
                           code="missing_required_parameter")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise RequestError(400, f"Invalid value for 'messages[{i}].role': expected one of "
                               f"{', '.join(ROLES)}.", param=f"messages[{i}].role", code="invalid_value")
        content = message.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                _validate_part(part, f"messages[{i}].content[{j}]")
        elif content is not None and not isinstance(content, str):
            raise RequestError(400, f"Invalid type for 'messages[{i}].content': expected a string or "
                               "an array of content parts.", param=f"messages[{i}].content",
                               code="invalid_type")
    _check_params(body)
    if body.get("n") not in (None, 1):
        raise RequestError(400, "The loopback server answers one choice per request: send n=1 (or leave "
                           "it out).", param="n", code="unsupported_value")
    if body.get("top_logprobs") is not None and not body.get("logprobs"):
        raise RequestError(400, "Invalid value for 'top_logprobs': 'logprobs' must be set to true when "
                           "'top_logprobs' is used.", param="top_logprobs", code="invalid_value")
    response_format = body.get("response_format")
    if response_format is not None:
        _check_response_format(response_format, strict=strict)
    info = model_info(model)
    if strict and info.known and not info.vision and _has_image(messages):
        raise images_unsupported(_first_image(messages))
    if strict and body.get("max_tokens") is not None and info.reasoning:
        raise RequestError(400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
                           "Use 'max_completion_tokens' instead.", param="max_tokens",
                           code="unsupported_parameter")


# name -> (minimum, maximum or None, integer?), with OpenAI's documented ranges
_RANGES: dict[str, tuple[float, float | None, bool]] = {
    "temperature": (0, 2, False), "top_p": (0, 1, False), "frequency_penalty": (-2, 2, False),
    "presence_penalty": (-2, 2, False), "top_logprobs": (0, 20, True), "max_tokens": (1, None, True),
    "max_completion_tokens": (1, None, True), "n": (1, 128, True), "seed": (-2**63, 2**63 - 1, True),
}


def _check_params(body: dict[str, Any]) -> None:
    for name, (low, high, integer) in _RANGES.items():
        value = body.get(name)
        if value is None:
            continue
        kind, expected = ("integer", "an integer") if integer else ("decimal", "a number")
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            raise RequestError(400, f"Invalid type for '{name}': expected {expected}, but got "
                               f"{type(value).__name__} instead.", param=name, code="invalid_type")
        if value < low:
            raise RequestError(400, f"Invalid '{name}': {kind} below minimum value. Expected a value >= "
                               f"{low:g}, but got {value!r} instead.", param=name,
                               code=f"{kind}_below_min_value")
        if high is not None and value > high:
            raise RequestError(400, f"Invalid '{name}': {kind} above maximum value. Expected a value <= "
                               f"{high:g}, but got {value!r} instead.", param=name,
                               code=f"{kind}_above_max_value")


def _check_response_format(response_format: Any, *, strict: bool) -> None:
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise RequestError(400, "Invalid value for 'response_format.type': expected 'text', 'json_object' "
                           "or 'json_schema'.", param="response_format.type", code="invalid_value")
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise RequestError(400, "Missing required parameter: 'response_format.json_schema.name'.",
                               param="response_format.json_schema.name", code="missing_required_parameter")
        problem = strict_problem(response_format) if strict else None
        if problem:
            raise RequestError(400, problem, param="response_format")


def _has_image(messages: list[Any]) -> bool:
    return any(isinstance(m.get("content"), list) and any(p.get("type") == "image_url" for p in m["content"])
               for m in messages)


def _validate_part(part: Any, where: str) -> None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise RequestError(400, f"Invalid type for '{where}.text': expected a string.",
                               param=f"{where}.text", code="invalid_type")
        return
    if kind != "image_url":
        raise RequestError(400, f"Invalid value for '{where}.type': expected 'text' or 'image_url'.",
                           param=f"{where}.type", code="invalid_value")
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str) or not url:
        raise RequestError(400, f"Missing required parameter: '{where}.image_url.url'.",
                           param=f"{where}.image_url.url", code="missing_required_parameter")
    if image.get("detail", "auto") not in ("auto", "low", "high"):
        raise RequestError(400, f"Invalid value for '{where}.image_url.detail': expected 'auto', 'low' "
                           "or 'high'.", param=f"{where}.image_url.detail", code="invalid_value")
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        try:
            if not header.endswith(";base64") or not payload:
                raise ValueError
            base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, f"Invalid image data URL in '{where}.image_url.url': expected "
                               "data:image/<type>;base64,<valid base64>.",
                               param=f"{where}.image_url.url", code="invalid_image_url") from None
    elif not url.startswith(("http://", "https://")):
        raise RequestError(400, f"Invalid image URL in '{where}.image_url.url': expected an http(s) "
                           "URL or a base64 data URL.", param=f"{where}.image_url.url",
                           code="invalid_image_url")
