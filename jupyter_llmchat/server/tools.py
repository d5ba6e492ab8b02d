"""Tool calls on the loopback server: scripted calls, the offline demo's calls, and OpenAI's rules.

A script's ``tool_calls`` (``[{"name": "f", "arguments": {...}}, ...]``: several at once are
parallel calls) makes the reply ask for those calls, with finish_reason "tool_calls"; arguments
given as a dict are sent as its JSON, given as a string they are sent as they are (a malformed
call). In a stream each call's arguments arrive in fragments of ``fragment`` characters.

Without a script, when the request offers tools, the offline demo runs the loop as a model
would: a question that names a tool (or asks for "a tool") gets a call to it, its arguments a
valid instance of its schema (strings from the question's quoted text, else saying where they
come from); once the tools' results are in, the reply says what they returned.

``check_tool_use`` rejects what OpenAI rejects, in its words: malformed tool definitions, strict
schemas that break strict mode's rules, ``tool_choice`` without tools, a tool message that answers
no call (an orphan), and an assistant message whose calls are not all answered.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from ..core.tokens import TokenCounter
from .markdown import DISCLOSURE
from .script import Script
from .structured import SOURCE, _instance
from .validation import RequestError

DEFAULT_FRAGMENT = 4  # characters of arguments per streamed delta, about a token each
_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
_QUOTED = re.compile(r"\"([^\"]+)\"|“([^”]+)”|'([^']+)'")


@dataclass(frozen=True)
class PlannedCall:
    """One tool call of a reply: its id, the tool's name and the arguments' JSON text as sent."""

    id: str
    name: str
    arguments: str

    def fragments(self, size: int) -> list[str]:
        return [self.arguments[i:i + size] for i in range(0, len(self.arguments), size)] or [""]


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def planned_calls(body: dict[str, Any], script: Script) -> list[PlannedCall]:
    """The calls the reply asks for: the script's, else the offline demo's (empty: a text reply)."""
    if script.tool_calls is not None:
        return [PlannedCall(str(call.get("id") or new_call_id()), call["name"], _arguments(call.get("arguments")))
                for call in script.tool_calls]
    if script.reply is not None or script.tokens is not None or not body.get("tools"):
        return []
    return demo_calls(body)


def _arguments(value: Any) -> str:
    if value is None:
        return "{}"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def completion_tokens(model: str, calls: list[PlannedCall]) -> int:
    """Completion tokens the calls cost, counted as the client counts them."""
    return TokenCounter(model).count_calls((call.id, call.name, call.arguments) for call in calls)


# -- the offline demo ---------------------------------------------------------------------------
def demo_calls(body: dict[str, Any]) -> list[PlannedCall]:
    """What the demo asks for: the tools the question names (in the order named), or the first
    tool when it asks for "a tool"; nothing once the tools have answered this question."""
    messages = body.get("messages") or []
    if _answered(messages) or body.get("tool_choice") == "none":
        return []
    tools = [tool.get("function") or {} for tool in body.get("tools") or [] if isinstance(tool, dict)]
    question = _question(messages)
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        chosen = [tool for tool in tools if tool.get("name") == wanted]
    else:
        lowered = question.lower()
        named = [(lowered.find(tool.get("name", "").lower()), tool) for tool in tools if tool.get("name")]
        chosen = [tool for at, tool in sorted((pair for pair in named if pair[0] >= 0), key=lambda pair: pair[0])]
        if not chosen and tools and (choice == "required" or re.search(r"\btools?\b", lowered)):
            chosen = tools[:1]
    quoted = [next(group for group in match.groups() if group) for match in _QUOTED.finditer(question)]
    return [PlannedCall(new_call_id(), tool["name"], json.dumps(_fill(tool.get("parameters") or {}, quoted),
                                                                ensure_ascii=False))
            for tool in chosen]


def demo_results_text(messages: list[dict[str, Any]]) -> str | None:
    """The demo's answer once tools have answered the question: what each returned; None before."""
    if not _answered(messages):
        return None
    names = {}
    for message in messages:
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict):
                names[call.get("id")] = (call.get("function") or {}).get("name", "?")
    lines = []
    for message in messages[_last_user(messages) + 1:]:
        if message.get("role") == "tool":
            result = " ".join(str(message.get("content") or "").split())
            result = result if len(result) <= 200 else result[:199] + "…"
            lines.append(f"- `{names.get(message.get('tool_call_id'), '?')}` returned: {result}")
    return f"{DISCLOSURE}\n\nThe tools answered:\n\n" + "\n".join(lines) + "\n"


def _fill(schema: dict[str, Any], quoted: list[str]) -> Any:
    """A valid instance of ``schema`` as a model would fill it: what is required (a nullable value:
    null, its default), strings taken in order from the question's quoted text."""
    texts = iter(quoted)

    def value(node: Any, depth: int) -> Any:
        if not isinstance(node, dict) or depth > 16:
            return None
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return value((schema.get("$defs") or {}).get(ref[8:], {}), depth + 1)
        kind = node.get("type")
        if any(isinstance(v, dict) and v.get("type") == "null" for v in node.get("anyOf", ())) or (
                isinstance(kind, list) and "null" in kind):
            return None
        if kind == "object" or "properties" in node:
            required = node.get("required") or []
            return {key: value(sub, depth + 1) for key, sub in (node.get("properties") or {}).items()
                    if key in required}
        if kind == "array":
            return [value(node.get("items"), depth + 1) for _ in range(min(int(node.get("minItems", 1)), 3))]
        made = _instance(node, schema, depth)
        return next(texts, made) if made == SOURCE else made

    return value(schema, 0)


def _last_user(messages: list[dict[str, Any]]) -> int:
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], dict) and messages[index].get("role") == "user":
            return index
    return -1


def _answered(messages: list[dict[str, Any]]) -> bool:
    """True when tool results follow the last question."""
    return any(isinstance(m, dict) and m.get("role") == "tool" for m in messages[_last_user(messages) + 1:])


def _question(messages: list[dict[str, Any]]) -> str:
    index = _last_user(messages)
    if index < 0:
        return ""
    content = messages[index].get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


# -- OpenAI's rules -----------------------------------------------------------------------------
def check_tool_use(body: dict[str, Any]) -> None:
    """Reject malformed tools, a ``tool_choice`` without tools, and tool messages out of place."""
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise RequestError(400, f"Invalid type for 'tools': expected an array, but got {type(tools).__name__} "
                               "instead.", param="tools", code="invalid_type")
        for index, tool in enumerate(tools):
            _check_tool(tool, index)
    if body.get("tool_choice") is not None and not tools:
        raise RequestError(400, "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
                           "specified.", param="tool_choice")
    _check_order(body["messages"])


def _check_tool(tool: Any, index: int) -> None:
    where = f"tools[{index}]"
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else tool
        raise RequestError(400, f"Invalid value: '{kind}'. Supported values are: 'function' and 'custom'.",
                           param=f"{where}.type", code="invalid_value")
    function = tool.get("function")
    if not isinstance(function, dict):
        function = {}
    name = function.get("name")
    if not isinstance(name, str):
        raise RequestError(400, f"Missing required parameter: '{where}.function.name'.",
                           param=f"{where}.function.name", code="missing_required_parameter")
    if not _NAME.match(name) or len(name) > 64:
        raise RequestError(400, f"Invalid '{where}.function.name': string does not match pattern. Expected a "
                           "string that matches the pattern '^[a-zA-Z0-9_-]+$'.", param=f"{where}.function.name",
                           code="invalid_value")
    parameters = function.get("parameters")
    if parameters is not None and (not isinstance(parameters, dict) or parameters.get("type") != "object"):
        kind = parameters.get("type") if isinstance(parameters, dict) else type(parameters).__name__
        raise RequestError(400, f"Invalid schema for function '{name}': schema must be a JSON Schema of 'type: "
                           f"\"object\"', got 'type: \"{kind}\"'.", param=f"{where}.function.parameters",
                           code="invalid_function_parameters")
    if function.get("strict") and isinstance(parameters, dict):
        problem = strict_problem(parameters, ())
        if problem is not None:
            raise RequestError(400, f"Invalid schema for function '{name}': {problem}",
                               param=f"{where}.function.parameters", code="invalid_function_parameters")


def strict_problem(schema: Any, context: tuple[str, ...]) -> str | None:
    """What makes ``schema`` break strict mode's rules, in OpenAI's words; None when it keeps them."""
    if not isinstance(schema, dict):
        return None
    said = f"In context={context!r}, "
    if "default" in schema:
        return said + "'default' is not permitted."
    if schema.get("type") == "object" or "properties" in schema:
        if schema.get("additionalProperties") is not False:
            return said + "'additionalProperties' is required to be supplied and to be false."
        properties = schema.get("properties") or {}
        missing = [key for key in properties if key not in (schema.get("required") or [])]
        if missing:
            return (said + "'required' is required to be supplied and to be an array including every key in "
                    f"properties. Missing '{missing[0]}'.")
        for key, sub in properties.items():
            problem = strict_problem(sub, (*context, "properties", key))
            if problem:
                return problem
    for key in ("items", "anyOf", "$defs"):
        value = schema.get(key)
        parts = value.items() if isinstance(value, dict) and key == "$defs" else enumerate(
            value if isinstance(value, list) else [value] if isinstance(value, dict) else [])
        for name, sub in parts:
            problem = strict_problem(sub, (*context, key, str(name)) if key != "items" else (*context, key))
            if problem:
                return problem
    return None


def _check_order(messages: list[Any]) -> None:
    """Each tool message answers a call of the assistant message before it (tool messages of the same
    calls may follow one another), and every call of an assistant message is answered."""
    open_calls: dict[str, int] = {}  # call id -> index of the assistant message that asked
    asking: int | None = None
    for index, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                raise RequestError(400, f"Missing required parameter: 'messages[{index}].tool_call_id'.",
                                   param=f"messages[{index}].tool_call_id", code="missing_required_parameter")
            if asking is None:
                raise RequestError(400, "Invalid parameter: messages with role 'tool' must be a response to a "
                                   "preceeding message with 'tool_calls'.", param=f"messages.[{index}].role")
            if call_id not in open_calls:
                raise RequestError(400, f"Invalid parameter: 'tool_call_id' of '{call_id}' not found in "
                                   "'tool_calls' of previous message.", param=f"messages.[{index}].tool_call_id")
            del open_calls[call_id]
            continue
        _unanswered(open_calls, asking)
        asking = None
        calls = message.get("tool_calls") if role == "assistant" else None
        if calls:
            for position, call in enumerate(calls if isinstance(calls, list) else [None]):
                _check_call(call, f"messages[{index}].tool_calls[{position}]")
                open_calls[call["id"]] = index
            asking = index
    _unanswered(open_calls, asking)


def _unanswered(open_calls: dict[str, int], asking: int | None) -> None:
    if open_calls and asking is not None:
        raise RequestError(400, "An assistant message with 'tool_calls' must be followed by tool messages responding "
                           "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                           + ", ".join(open_calls), param=f"messages.[{asking}].role")


def _check_call(call: Any, where: str) -> None:
    function = call.get("function") if isinstance(call, dict) else None
    for key, value in (("id", call.get("id") if isinstance(call, dict) else None),
                       ("function.name", function.get("name") if isinstance(function, dict) else None),
                       ("function.arguments", function.get("arguments") if isinstance(function, dict) else None)):
        if not isinstance(value, str):
            raise RequestError(400, f"Missing required parameter: '{where}.{key}'.", param=f"{where}.{key}",
                               code="missing_required_parameter")
