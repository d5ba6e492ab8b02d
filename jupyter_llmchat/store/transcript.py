"""JSON transcripts of a conversation (``%chat save`` / ``%chat load``) and a Markdown rendering.

The format is stable; the store reuses it for export and import. Version 2, one JSON object::

    {"format": "jupyter_llmchat.transcript", "version": 2, "saved": "2026-11-24T12:00:00+00:00",
     "model": "gpt-4o-mini", "system": "You are terse." | null, "params": {"temperature": 0.2},
     "messages": [Message.to_dict(), ...]}

Each message keeps role, text, tokens, images (ImageRef fields: data URLs inline, so a transcript
is self-contained), name, status, model, usage and created (Unix time), and since version 2 its
tool calls: ``tool_calls`` (an assistant message's, each ``{"id", "name", "arguments"}``) and
``tool_call_id`` (a "tool" message's: the call whose result it holds). Version 1 files (before
tools) are read as they are: their messages have no tool calls. The API key is never in it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ChatError
from ..core.messages import Message

if TYPE_CHECKING:
    from ..core.chatbot import Chatbot

FORMAT = "jupyter_llmchat.transcript"
VERSION = 2
READABLE = (1, 2)  # versions this code loads: 1 has no tool calls, and means the same otherwise
ROLES = ("user", "assistant", "system", "tool")


class TranscriptError(ChatError):
    """A transcript file cannot be read or written, or is not a transcript."""


def dump(bot: Chatbot) -> dict[str, Any]:
    """The conversation as a JSON-ready dict (see the module docstring for the format)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "saved": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": bot.model,
        "system": bot.system,
        "params": {k: v for k, v in bot.params.items() if is_json(v)},
        "messages": [message.to_dict() for message in bot.conversation.messages],
    }


def save(bot: Chatbot, path: str | os.PathLike[str]) -> Path:
    """Write ``dump(bot)`` to ``path`` atomically (a crash never leaves half a file); returns the path."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise TranscriptError(f"cannot save the transcript to {str(target)!r}: it is a directory; "
                              "give a file name such as chat.json")
    text = json.dumps(dump(bot), ensure_ascii=False, indent=1)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(tmp, target)
    except OSError as error:
        raise TranscriptError(f"cannot save the transcript to {str(target)!r}: {error.strerror or error}; "
                              "choose a writable path") from None
    return target


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The transcript dict in ``path``, checked, without touching any conversation."""
    source = Path(path).expanduser()
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TranscriptError(f"no transcript at {str(source)!r}: check the path "
                              "(%chat save PATH writes one)") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise TranscriptError(f"cannot read {str(source)!r}: {reason}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise TranscriptError(f"{str(source)!r} is not a transcript: invalid JSON at line {error.lineno} "
                              f"({error.msg})") from None
    return check(data, str(source))


def check(data: Any, where: str = "transcript") -> dict[str, Any]:
    """``data`` if it is a transcript this version can load, else a TranscriptError saying why."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TranscriptError(f"{where!r} is not a jupyter_llmchat transcript (no \"format\": "
                              f"\"{FORMAT}\")")
    if data.get("version") not in READABLE:
        raise TranscriptError(f"{where!r} is transcript version {data.get('version')!r}; this "
                              f"jupyter_llmchat reads versions {' and '.join(map(str, READABLE))}: upgrade the package")
    if not isinstance(data.get("model"), str) or not isinstance(data.get("messages"), list):
        raise TranscriptError(f"{where!r} is damaged: it needs a \"model\" string and a \"messages\" list")
    return data


def messages_from(data: dict[str, Any], where: str = "transcript") -> list[Message]:
    """The Message objects of a checked transcript dict."""
    out = []
    for number, item in enumerate(data["messages"], 1):
        try:
            message = Message.from_dict(item)
        except (TypeError, ValueError, AttributeError) as error:
            raise TranscriptError(f"{where!r}: message {number} is damaged ({error})") from None
        if message.role not in ROLES:
            raise TranscriptError(f"{where!r}: message {number} has unknown role {message.role!r}")
        out.append(message)
    return out


def restore(data: dict[str, Any], bot: Chatbot, where: str = "transcript") -> Chatbot:
    """Replace ``bot``'s model, system, params and history with a checked transcript's."""
    messages = messages_from(data, where)  # parse everything before changing anything
    params = data.get("params") or {}
    bot.model = data["model"]
    bot.system = data.get("system")
    bot.params = {**bot.params, **{k: v for k, v in params.items() if k in _request_params()}}
    conversation = bot.conversation
    conversation.clear()
    for message in messages:
        conversation.append(message)
    conversation.recount(conversation.counter)  # token counts as this bot counts them
    return bot


def load(path: str | os.PathLike[str], bot: Chatbot) -> Chatbot:
    """Restore ``bot`` from the transcript at ``path`` (model, system, params, history)."""
    return restore(read(path), bot, str(path))


def to_markdown(bot: Chatbot, *, image_html: bool = False, thumbnail: int = 96,
                render: Callable[[str], str] | None = None) -> str:
    """The conversation as Markdown: one heading per message, images as thumbnails or text markers.

    Model names, statuses and image labels come from the endpoint or from a file anyone could
    have written: they are written as literal text (``markdown_literal``), and an image is an
    ``<img>`` only when its URL is one we show (``images.displayable_url``). ``render`` rewrites
    the Markdown of each message and tool call before it is placed (the notebook passes its
    display-safe function: messages are model text, shown in a trusted output); parts are always
    separated by a blank line, so math or a block of one never runs into the next."""
    shown: Callable[[str], str] = render or (lambda text: text)
    parts = [f"**model:** {_code_span(bot.model)} · **messages:** {len(bot.conversation.messages)}"]
    if bot.system:
        parts.append(f"### system\n\n{shown(bot.system)}")
    for message in bot.conversation.messages:
        heading: str = message.role if message.role in ROLES else "message"
        if message.role == "assistant" and message.model:
            heading += f" · {markdown_literal(message.model)}"
        if message.status != "complete":
            heading += f" · {markdown_literal(message.status)}"
        body = shown(message.text) if message.text else ""
        if message.images:
            body += "\n\n" + " ".join(_image_markdown(image, image_html, thumbnail) for image in message.images)
        if message.role == "tool":  # what a function returned: literal text, never Markdown
            body = shown(_fenced(message.text))
        calls = [shown(f"**tool call:** {_code_span(f'{call.name}({call.arguments})')}")
                 for call in message.tool_calls]
        body = "\n\n".join(part for part in (body, *calls) if part)
        parts.append(f"### {heading}\n\n{body}")
    return "\n\n".join(parts) + "\n"


def _image_markdown(image: Any, html: bool, size: int) -> str:
    from ..core.images import image_label, thumbnail_html

    if html:  # text instead of <img> for a URL we do not show; on one line, so no line of an
        # attribute (a file name is anyone's text) can start a Markdown block and cut the tag open
        return " ".join(thumbnail_html(image, size=size).splitlines())
    dims = f" {image.width}x{image.height}" if image.width and image.height else ""
    return f"[image: {markdown_literal(image_label(image))}{dims}]"


def _fenced(text: str) -> str:
    """``text`` in a fenced code block whose fence is longer than any backtick run inside."""
    fence = "`" * max(3, max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    return f"{fence}text\n{text}\n{fence}"


_MARKUP = re.compile(r"([`*_\[\]<>|&~#!])")
# a backslash JupyterLab's MathJax could read as the start of math or a command (\(, \[, \$, \\,
# \begin...): written so the page holds two, which MathJax shows as one
_TEX_BACKSLASH = re.compile(r"\\(?=[\\()\[\]$A-Za-z])")


def _code_span(text: str) -> str:
    """``text`` as an inline code span (literal inside), fenced by more backticks than it holds."""
    text = " ".join(text.splitlines())
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown_literal(text: str) -> str:
    """``text`` on one line, every character that could start Markdown or HTML (a tag, a link, an
    image, emphasis, a table cell, an entity) backslash-escaped: it shows as written. A dollar is
    written ``\\\\$`` and a backslash before ``( [ $ \\`` or a letter ``\\\\\\\\``: the page then holds
    ``\\$`` and ``\\\\``, which MathJax (JupyterLab, Notebook 7) shows as ``$`` and ``\\`` and never as math."""
    line = " ".join(text.splitlines())
    out = []
    for i, char in enumerate(line):
        if char == "\\":
            out.append("\\\\\\\\" if _TEX_BACKSLASH.match(line, i) else "\\\\")
        elif char == "$":
            out.append("\\\\$")
        elif char in "()[]" and i and line[i - 1] == "\\":
            out.append(f"&#{ord(char)};")  # not \\( : JupyterLab's removeMath would start math there
        else:
            out.append(_MARKUP.sub(r"\\\1", char))
    return "".join(out)


def _request_params() -> tuple[str, ...]:
    from ..core.chatbot import REQUEST_PARAMS

    return REQUEST_PARAMS


def is_json(value: Any) -> bool:
    """Only JSON values are saved: a restored parameter must be the value that was set."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
