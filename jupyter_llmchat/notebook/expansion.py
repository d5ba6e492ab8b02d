"""``{name}`` / ``{expression}`` placeholders in a ``%%chat`` prompt, filled from the notebook.

Like IPython's ``{}`` expansion in shell escapes, but strict: ``{{`` and ``}}`` are literal
braces, and a placeholder that cannot be evaluated is an error (nothing is sent) instead of
being left in the prompt unnoticed. Placeholders follow f-string rules: ``{x!r}``, ``{x:.2f}``,
``{In[3]}``, ``{Out[4]}``, ``{df.head()}``. No ``str.format`` on the prompt: braces inside a
placeholder's expression (dicts, sets, comprehensions) and inside its strings are handled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.errors import ChatError, one_line

CLOSERS = {"(": ")", "[": "]", "{": "}"}
LITERAL_HINT = "write {{ and }} for literal braces, or use %%chat --raw"


class ExpansionError(ChatError):
    """A placeholder is malformed or its expression failed; the prompt was not sent."""


def expand(template: str, namespace: Mapping[str, Any],
           global_namespace: Mapping[str, Any] | None = None) -> str:
    """``template`` with every ``{expression}`` replaced by its value from ``namespace``."""
    out: list[str] = []
    i, n = 0, len(template)
    while i < n:
        char = template[i]
        if char == "{":
            if template.startswith("{{", i):
                out.append("{")
                i += 2
                continue
            end = _placeholder_end(template, i)
            out.append(_evaluate(template, i, template[i + 1:end], namespace, global_namespace))
            i = end + 1
        elif char == "}":
            if not template.startswith("}}", i):
                raise ExpansionError(f"single '}}' at {_where(template, i)}; {LITERAL_HINT}")
            out.append("}")
            i += 2
        else:
            nxt = _next_brace(template, i)
            out.append(template[i:nxt])
            i = nxt
    return "".join(out)


def placeholders(template: str) -> list[str]:
    """The expressions in ``template``, in order (for tests and help text)."""
    found: list[str] = []
    i = 0
    while i < len(template):
        if template.startswith("{{", i) or template.startswith("}}", i):
            i += 2
        elif template[i] == "{":
            end = _placeholder_end(template, i)
            found.append(template[i + 1:end])
            i = end + 1
        else:
            i += 1
    return found


def _next_brace(text: str, start: int) -> int:
    positions = [p for p in (text.find("{", start), text.find("}", start)) if p >= 0]
    return min(positions) if positions else len(text)


def _placeholder_end(text: str, start: int) -> int:
    """Index of the ``}`` closing the placeholder opened at ``start`` (brackets and strings skipped)."""
    stack: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char in "'\"":
            i = _string_end(text, i, start)
            continue
        if char in CLOSERS:
            stack.append(CLOSERS[char])
        elif char in ")]}":
            if not stack:
                if char == "}":
                    return i
                raise ExpansionError(f"unbalanced {char!r} in the placeholder at {_where(text, start)}; "
                                     f"{LITERAL_HINT}")
            if stack.pop() != char:
                raise ExpansionError(f"mismatched {char!r} in the placeholder at {_where(text, start)}; "
                                     f"{LITERAL_HINT}")
        i += 1
    raise ExpansionError(f"unmatched '{{' at {_where(text, start)}; {LITERAL_HINT}")


def _string_end(text: str, i: int, start: int) -> int:
    """Index just past the string literal opening at ``i`` (single or triple quoted)."""
    quote = text[i] * 3 if text.startswith(text[i] * 3, i) else text[i]
    j = i + len(quote)
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text.startswith(quote, j):
            return j + len(quote)
        if len(quote) == 1 and text[j] == "\n":
            break
        j += 1
    raise ExpansionError(f"unterminated string in the placeholder at {_where(text, start)}; "
                         f"{LITERAL_HINT}")


def _split_field(field: str) -> tuple[str, str | None, str]:
    """(expression, conversion, format spec), splitting at a top-level ``!r`` / ``:`` as f-strings do."""
    depth = 0
    i = 0
    while i < len(field):
        char = field[i]
        if char in "'\"":
            i = _string_end(field, i, 0)
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0 and char == "!" and field[i + 1:i + 2] in ("r", "s", "a") and \
                field[i + 2:i + 3] in ("", ":"):
            spec = field[i + 3:] if field[i + 2:i + 3] == ":" else ""
            return field[:i], field[i + 1], spec
        elif depth == 0 and char == ":" and not field.startswith(":=", i):
            return field[:i], None, field[i + 1:]
        i += 1
    return field, None, ""


def _evaluate(template: str, start: int, field: str, namespace: Mapping[str, Any],
              global_namespace: Mapping[str, Any] | None) -> str:
    where = _where(template, start)
    expression, conversion, spec = _split_field(field)
    expression = expression.strip()
    if not expression:
        raise ExpansionError(f"empty {{}} at {where}; {LITERAL_HINT}")
    try:
        code = compile(expression, "<%%chat placeholder>", "eval")
    except SyntaxError as error:
        raise ExpansionError(f"{{{expression}}} at {where} is not a Python expression "
                             f"({error.msg}); {LITERAL_HINT}") from None
    try:
        value = eval(code, _globals(namespace, global_namespace), namespace)
    except NameError as error:
        raise ExpansionError(f"{{{expression}}} at {where}: {error}; define it in a cell first, or "
                             f"{LITERAL_HINT}") from None
    except Exception as error:
        raise ExpansionError(f"{{{expression}}} at {where} failed: {type(error).__name__}: "
                             f"{one_line(str(error), 200)}") from None
    if conversion == "r":
        value = repr(value)
    elif conversion == "a":
        value = ascii(value)
    elif conversion == "s":
        value = str(value)
    try:
        return format(value, spec)
    except (TypeError, ValueError) as error:
        raise ExpansionError(f"{{{field}}} at {where}: bad format spec {spec!r} ({error})") from None


def _globals(namespace: Mapping[str, Any], global_namespace: Mapping[str, Any] | None) -> dict[str, Any]:
    chosen = global_namespace if global_namespace is not None else namespace
    return chosen if isinstance(chosen, dict) else dict(chosen)


def _where(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {column}"
