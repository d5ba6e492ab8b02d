"""What an endpoint's error response means, in one line that names the cause and the fix.

OpenAI-compatible servers agree on the status codes more than on anything else: OpenAI sets
``code`` ("context_length_exceeded"), LiteLLM puts the status in ``code`` ("400") and the cause in
the message ("litellm.ContextWindowExceededError: ..."), llama.cpp uses ``type``
("exceed_context_size_error", with ``n_ctx``), vLLM answers a bare object ("This model's maximum
context length is 4096 tokens..."), Ollama says 'model "x" not found, try pulling it first'. So a
response is read by status first, then by code, type and message. No HTTP here: the client hands
over the status, the parsed body and the headers.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import errors

MISSING_KEY_FIX = ("set OPENAI_API_KEY, pass api_key=, or point OPENAI_BASE_URL (base_url=) "
                   "at a local OpenAI-compatible server")
# OpenAI's codes for an image it could not use.
IMAGE_ERROR_CODES = ("invalid_image", "invalid_image_format", "invalid_image_url", "image_parse_error")
# A model without vision: OpenAI answers 400 with no code and param "messages.[i].content.[j].type".
_CONTENT_TYPE_PARAM = re.compile(r"^messages\.?\[\d+\]\.content\.?\[\d+\]\.type$")
_CONTEXT_TYPES = ("exceed_context_size_error",)  # llama.cpp
_CONTEXT_CODES = ("context_length_exceeded", "string_above_max_length")
_CONTEXT_WORDS = re.compile(
    r"ContextWindowExceeded|maximum context length|context (?:length|window|size) (?:is |of )?exceeded"
    r"|exceeds? (?:the )?(?:available |model'?s? )?context|prompt is too long|too many (?:input )?tokens"
    r"|longer than the (?:model'?s? )?context", re.IGNORECASE)
_WINDOW_SIZE = re.compile(r"(?:maximum context length is|context (?:length|window|size) (?:is|of))\s*([\d,]+)",
                          re.IGNORECASE)
_MODEL_MISSING = re.compile(r"\bmodel\b.{0,120}?(?:not found|does not exist|is not (?:available|supported|served))"
                            r"|Invalid model name|unknown model|no such model", re.IGNORECASE | re.DOTALL)
_PULL_FIRST = re.compile(r"try pulling it first", re.IGNORECASE)  # Ollama
_NO_IMAGES = re.compile(
    r"image input is not supported|not a multimodal model|does not support (?:image|vision|multimodal)"
    r"|(?:vision|images?) (?:is|are) not supported|image_url is only supported by certain models",
    re.IGNORECASE)
_BAD_IMAGE = re.compile(r"failed to (?:load|decode|process|read) (?:the )?image", re.IGNORECASE)
_NULL_WORDS = ("", "none", "null")  # LiteLLM sends the strings "None" for missing type and param


@dataclass(frozen=True)
class ErrorResponse:
    """An error response as any server words it: the fields every explanation looks at."""

    status: int
    message: str  # one line
    code: str | None = None  # None when absent, or when it only repeats the status ("400")
    type: str | None = None
    param: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)  # the error object's other fields
    retry_after: float | None = None  # seconds a 429 asks to wait


def read_error(status: int, body: Any, headers: Mapping[str, str] | None = None, *,
               text: str = "") -> ErrorResponse:
    """Read an error response: ``body`` is the parsed JSON error object (OpenAI's ``error``
    member, or the whole body), or None/text when the body was not JSON."""
    error = body if isinstance(body, Mapping) else {}
    if isinstance(error.get("error"), Mapping):
        error = error["error"]
    message = (_text(error.get("message")) or _text(error.get("detail")) or _text(error.get("error"))
               or (body if isinstance(body, str) else "") or text)
    code = _text(error.get("code"))
    if code is not None and code == str(status):
        code = None
    return ErrorResponse(status, errors.one_line(message), code, _text(error.get("type")),
                         _text(error.get("param")), error, _asked_wait(headers or {}))


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (Mapping, list)):
        return None
    text = str(value).strip()
    return None if text.lower() in _NULL_WORDS else text


def _asked_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds a 429 asks to wait (retry-after-ms, or retry-after as seconds or a date), for the
    message only: the SDK decides whether and how long to wait."""
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            date = email.utils.parsedate_to_datetime(value)
            return max(date.timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def explain(response: ErrorResponse, *, where: str, model: str | None, tried: str = "",
            path: str = "/chat/completions") -> errors.ChatError:
    """The one-line ChatError for ``response`` from the endpoint at ``where`` (``tried``: " after
    2 retries" or ""; ``path``: the route that was asked, named when nothing answers there)."""
    status, code, detail = response.status, response.code, response.message
    if status in (401, 403):
        return errors.AuthenticationError(
            f"authentication failed ({status}) at {where}: the API key was rejected or lacks access; "
            f"{MISSING_KEY_FIX}", status=status, code=code)
    if status == 429:
        if code == "insufficient_quota":
            return errors.RateLimitError(f"quota exhausted (429 insufficient_quota) at {where}: check the "
                                         "account's plan and billing", status=status, code=code)
        after = response.retry_after
        wait = f"; the server asks to wait {round(after, 2):g} s" if after else ""
        return errors.RateLimitError(f"rate limited (429){tried} at {where}{wait}: wait and ask again, or "
                                     "lower the request rate", status=status, code=code)
    if _is_context_error(response):
        return errors.ContextLengthError(
            f"the endpoint says the prompt exceeds the model's context window ({detail}); "
            f"{_context_fix(response)}", status=status, code=code)
    image_problem = _image_problem(response, model, where)
    if image_problem:
        return errors.BadRequestError(image_problem, status=status, code=code)
    if code == "model_not_found" or (status in (400, 404) and _MODEL_MISSING.search(detail)):
        pull = f"; pull it on the server first (ollama pull {model})" if _PULL_FIRST.search(detail) else ""
        said = f": {detail}" if code != "model_not_found" and detail else ""
        return errors.ModelNotFoundError(
            f"model {model!r} is not available at {where} ({status}{said}){pull}: check the name "
            "(Chatbot.client.list_models() lists what it serves) or the Azure deployment", status=status, code=code)
    if status == 404:
        return errors.ModelNotFoundError(
            f"nothing answers at {where}{path} (404: {detail or 'not found'}): check base_url= "
            "(OpenAI-compatible servers usually serve under /v1, e.g. http://localhost:11434/v1) or the "
            "Azure deployment", status=status, code=code)
    if status == 413:
        return errors.BadRequestError(
            f"the request is too large for {where} (413: {detail or 'payload too large'}): send fewer or "
            "smaller images, or a shorter prompt", status=status, code=code)
    if status >= 500:
        return errors.ServerError(f"server error ({status}{_code(code)}){tried} at {where}: "
                                  f"{detail or 'no details'}; try again later", status=status, code=code)
    return errors.BadRequestError(f"request rejected ({status}{_code(code)}): {detail or 'no details'}",
                                  status=status, code=code)


def _code(code: str | None) -> str:
    return f", {code}" if code else ""


def _is_context_error(response: ErrorResponse) -> bool:
    said = (400 <= response.status < 500 or response.status == 500) and _CONTEXT_WORDS.search(response.message)
    return response.code in _CONTEXT_CODES or response.type in _CONTEXT_TYPES or bool(said)


def context_window_said(response: ErrorResponse) -> int | None:
    """The context window the server names (llama.cpp's n_ctx, "maximum context length is N")."""
    n_ctx = response.details.get("n_ctx")
    if isinstance(n_ctx, int) and not isinstance(n_ctx, bool) and n_ctx > 0:
        return n_ctx
    match = _WINDOW_SIZE.search(response.message)
    return int(match.group(1).replace(",", "")) if match else None


def _context_fix(response: ErrorResponse) -> str:
    window = context_window_said(response)
    if window:
        return (f"set context_window={window} (the window the server names) so trimming keeps the "
                "prompt inside it, or lower max_tokens")
    return "set context_window= to the model's real window so trimming uses it"


def _image_problem(response: ErrorResponse, model: str | None, where: str) -> str | None:
    """The one-line explanation of an error about images (no vision, bad image), if it is one."""
    status, code, detail = response.status, response.code, response.message
    if (code is None and _CONTENT_TYPE_PARAM.match(response.param or "")) or _NO_IMAGES.search(detail):
        return (f"model {model!r} at {where} does not take images ({status}: {detail}); ask a vision "
                "model (e.g. model=\"gpt-4o-mini\") or leave the images out")
    if code == "invalid_image_url":
        return (f"the endpoint could not fetch or read an image URL ({status} {code}: {detail}); give a "
                "public http(s) URL of a PNG, JPEG, WEBP or GIF, or the file itself")
    if code in IMAGE_ERROR_CODES or _BAD_IMAGE.search(detail):
        named = f" {code}" if code else ""
        return (f"the endpoint rejected an image ({status}{named}: {detail}); it takes PNG, JPEG, WEBP or "
                "non-animated GIF up to 20 MB: give the file, bytes or figure and it is converted and scaled")
    return None
