"""%%chat --schema: the parsed object shown as a small table or pretty JSON (display-safe), _chat
holding the object; the sink's final states (parsed, refused, invalid); bad --schema input stopping
the cell before anything is sent. The notebook part runs in a real kernel against the loopback
server."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import pydantic

from jupyter_llmchat.core.reply import Reply, Usage
from jupyter_llmchat.notebook.structured_view import StructuredSink, object_bundle, plain_data
from jupyter_llmchat.notebook.tables import table_bundle
from jupyter_llmchat.server.structured import REFUSAL, SOURCE


class OutputArea:
    """Keeps every display message and applies them like a front end."""

    def __init__(self) -> None:
        self.outputs: dict[str, dict[str, str]] = {}

    def show(self, display_id: str, data: dict[str, str], *, update: bool) -> None:
        assert update == (display_id in self.outputs)
        self.outputs[display_id] = dict(data)

    def clear(self, *, wait: bool) -> None:
        self.outputs.clear()


class Movie(pydantic.BaseModel):
    title: str
    year: int
    seen: bool = False


@dataclasses.dataclass
class Pair:
    left: str
    right: list[int]


def test_a_flat_object_is_a_field_value_table() -> None:
    bundle = object_bundle(Movie(title="Alien", year=1979))
    assert bundle == table_bundle([["field", "value"], ["title", "Alien"], ["year", "1979"], ["seen", "false"]])
    assert bundle["text/plain"] == "field  value\ntitle  Alien\nyear   1979\nseen   false"


def test_an_object_holding_one_list_of_flat_objects_is_a_table_of_rows() -> None:
    bundle = object_bundle({"items": [{"label": "spam", "score": 0.9}, {"label": "ham", "note": None}]})
    assert bundle == table_bundle([["label", "score", "note"], ["spam", "0.9", ""], ["ham", "", "null"]])


def test_anything_else_is_indented_json() -> None:
    pretty = json.dumps({"left": "a", "right": [1, 2]}, indent=2)
    assert object_bundle(Pair("a", [1, 2])) == {"text/plain": pretty, "text/markdown": f"```json\n{pretty}\n```"}
    assert plain_data(Pair("a", [1, 2])) == {"left": "a", "right": [1, 2]}


def test_json_holding_a_fence_stays_one_code_block() -> None:
    bundle = object_bundle({"code": {"text": "```python\nprint(1)\n```"}})
    pretty = json.dumps({"code": {"text": "```python\nprint(1)\n```"}}, indent=2)
    assert bundle == {"text/plain": pretty, "text/markdown": f"````json\n{pretty}\n````"}


def test_model_text_in_cells_stays_text() -> None:
    bundle = object_bundle({"title": "<img src=x onerror=alert(1)> [click](javascript:alert(1)) $5 | pipe"})
    assert bundle["text/plain"].endswith("<img src=x onerror=alert(1)> [click](javascript:alert(1)) $5 | pipe")
    markdown = bundle["text/markdown"]
    assert markdown.endswith("| title | \\<img src=x onerror=alert(1)\\> \\[click\\]\\(javascript:alert(1)) "
                             "\\\\$5 \\| pipe |")  # each character that could start markup escaped
    assert markdown.count("|") - markdown.count("\\|") == 3 * 3  # the value's pipe does not split the row


def finished(reply: Reply) -> OutputArea:
    area = OutputArea()
    sink = StructuredSink(publisher=area, footer=True)
    sink.start(reply.model)
    sink.write(reply.text)
    sink.finish(reply)
    return area


def test_the_sink_ends_with_the_object_and_the_footer() -> None:
    reply = Reply(text='{"title": "Alien", "year": 1979}', model="gpt-4o-mini", usage=Usage(10, 5), cost=0.0,
                  parsed=Movie(title="Alien", year=1979))
    answer, footer = finished(reply).outputs.values()
    assert answer == object_bundle(reply.parsed)
    assert footer["text/plain"] == "[gpt-4o-mini · 10 in · 5 out tokens · $0]"


def test_a_refusal_shows_no_answer_and_says_why_in_the_footer() -> None:
    reply = Reply(text="", model="gpt-4o-mini", refusal="I can't <b>help</b>.")
    answer, footer = finished(reply).outputs.values()
    assert answer == {"text/plain": ""}
    assert footer["text/plain"].startswith("[the model refused to answer: I can't <b>help</b>.]")
    assert "<b>" not in footer["text/markdown"]


def test_an_answer_without_an_object_is_shown_as_received() -> None:
    reply = Reply(text='{"title": "Al', model="gpt-4o-mini", status="truncated", finish_reason="length")
    answer, footer = finished(reply).outputs.values()
    assert answer == {"text/plain": '{"title": "Al', "text/markdown": '{"title": "Al'}
    assert footer["text/plain"].startswith("[answer truncated: it reached an output token limit (finish_reason=length)]")


# -- in a real kernel --------------------------------------------------------------------------------
def test_chat_schema_in_a_kernel(loopback, tmp_path: Path) -> None:
    from support.kernel_notebook import run_cells

    loopback.queue()  # Movie: the server answers an instance of the schema sent
    loopback.queue(reply=json.dumps({"items": [{"label": "spam", "score": 0.9}, {"label": "ham", "score": 0.1}]}))
    loopback.queue(fault="refusal")
    loopback.queue(fault="schema_invalid", times=2)
    cells = [f"""
        %load_ext jupyter_llmchat
        %config ChatMagics.base_url = "{loopback.base_url}"
        %config ChatMagics.footer = False
        from pydantic import BaseModel
        class Movie(BaseModel):
            title: str
            year: int
        labels = {{"type": "object", "additionalProperties": True, "properties": {{"items": {{"type": "array", "items": {{"type": "object",
                  "properties": {{"label": {{"enum": ["spam", "ham"]}}, "score": {{"type": "number"}}}}}}}}}}}}
        not_a_schema = 3
        """,
             "%%chat --schema Movie\nA film?",
             "print(repr(_chat))",
             "%%chat --schema labels --no-history\nLabel these.",
             "print(repr(_chat))",
             "%%chat --schema Movie\nSomething you refuse?",
             "print(repr(_chat))",
             "%%chat --schema Movie\nTwice wrong",
             "print(repr(_chat))",
             "%%chat --schema Nope\nx",
             "%%chat --schema not_a_schema\nx",
             "%%chat --schema Movie --json\nx",
             "%%chat --schema Movie -f code\nx"]
    run = run_cells([textwrap.dedent(cell).strip("\n") for cell in cells], raises={7, 9, 10, 11, 12}, cwd=tmp_path)
    bodies = [r.body for r in loopback.requests if r.path.endswith("/chat/completions")]
    assert len(bodies) == 5  # Movie, labels, the refusal, two rounds of the invalid one; bad input sends nothing
    # a pydantic model: strict json_schema sent, the object as a table, _chat the instance
    assert bodies[0]["response_format"]["json_schema"]["name"] == "Movie"
    assert run.displays(1) == [table_bundle([["field", "value"], ["title", SOURCE], ["year", "0"]])["text/markdown"]]
    assert run.stdout(2) == f"Movie(title={SOURCE!r}, year=0)\n"
    # a JSON Schema dict that cannot be strict (an open object): JSON mode, a table of rows, _chat a dict
    assert bodies[1]["response_format"] == {"type": "json_object"}
    assert run.displays(3, "text/plain") == ["label  score\nspam   0.9\nham    0.1"]
    assert run.stdout(4) == "{'items': [{'label': 'spam', 'score': 0.9}, {'label': 'ham', 'score': 0.1}]}\n"
    # a refusal: no object, _chat None, the refusal said (footer facts off, the notice stays)
    assert run.displays(5, "text/plain") == ["", f"[the model refused to answer: {REFUSAL}]"]
    assert run.stdout(6) == "None\n"
    # invalid twice: one repair round, then one line holding what was wrong; _chat unchanged
    assert "the answer does not match Movie: title: Field required (after one repair round" in run.error_line(7)
    assert "Traceback" not in run.error_line(7)
    assert run.stdout(8) == "None\n"  # what the refusal left: the failed cell changed nothing
    # bad input: one line each, nothing sent
    assert run.error_line(9).endswith("--schema: no variable 'Nope' in the notebook; define it first, e.g. class "
                                      "Movie(BaseModel): ... (nothing was sent)")
    assert run.error_line(10).endswith("--schema not_a_schema: schema= takes a pydantic model, a dataclass, a "
                                       "TypedDict or a JSON Schema dict, got int (nothing was sent)")
    assert run.error_line(11).endswith("--schema shows the answer as its schema's object; drop --json or --schema")
    assert run.error_line(12).endswith("--schema shows the answer as its schema's object; drop -f code or --schema")
