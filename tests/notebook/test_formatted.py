"""--json and -f code: the answer's final form, and the sink outside a kernel."""

from __future__ import annotations

import json

import pytest
from support.fake_clock import FakeClock

from jupyter_llmchat.core.reply import Reply, Usage
from jupyter_llmchat.notebook.formatted import FormattedSink, first_code_block, format_answer


class OutputArea:
    """Keeps every display message and applies them like a front end."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, str], bool]] = []
        self.outputs: dict[str, dict[str, str]] = {}

    def show(self, display_id: str, data: dict[str, str], *, update: bool) -> None:
        assert update == (display_id in self.outputs)  # updates only of outputs that exist
        self.messages.append((display_id, dict(data), update))
        self.outputs[display_id] = dict(data)


@pytest.mark.parametrize("text, expected", [
    ("Use:\n\n```python\nprint(1)\n```\n", ("python", "print(1)")),
    ("```\nplain\n```", ("", "plain")),
    ("~~~bash\nls -l\n~~~", ("bash", "ls -l")),
    ("First:\n```sql\nSELECT 1;\n```\nSecond:\n```python\nx = 2\n```", ("sql", "SELECT 1;")),
    ("````markdown\n```python\ninner\n```\n````", ("markdown", "```python\ninner\n```")),
    ("  ```python\n  indented\n  ```", ("python", "indented")),  # as a front end shows it
    ("1. Install:\n\n   ```bash\n   pip install x\n   ```\n", ("bash", "pip install x")),  # in a list item
    ("> ```sql\n> SELECT 1;\n> ```", ("sql", "SELECT 1;")),
    ("```python title=\"a.py\"\nx = 1\n```", ("python", "x = 1")),
    ("```\n\tindented with a tab\n```", ("", "\tindented with a tab")),
    ("    ```\n    indented code, not a fence\n    ```", None),
    ("no code here", None),
    ("```python\nnever closed", None),
])
def test_first_code_block(text: str, expected: tuple[str, str] | None) -> None:
    assert first_code_block(text) == expected


def test_json_answers_are_indented_and_bad_json_is_said_plainly() -> None:
    bundle, note = format_answer('{"b": [1, 2], "a": "é"}', "json")
    pretty = json.dumps({"b": [1, 2], "a": "é"}, indent=2, ensure_ascii=False)
    assert bundle == {"text/plain": pretty, "text/markdown": f"```json\n{pretty}\n```"} and note is None
    bundle, note = format_answer("not { json", "json")
    assert bundle == {"text/plain": "not { json", "text/markdown": "not { json"}
    assert note == "the answer is not valid JSON (Expecting value at line 1): shown as received"


def test_code_answers_keep_fences_that_contain_fences() -> None:
    bundle, note = format_answer("````md\n```py\nx\n```\n````", "code")
    assert bundle == {"text/plain": "```py\nx\n```", "text/markdown": "````md\n```py\nx\n```\n````"}
    assert format_answer("prose only", "code")[1] == "no code block in the answer: the next cell was left alone"


def test_sink_outside_a_kernel_prints_the_result_and_footer(capsys: pytest.CaptureFixture[str]) -> None:
    sink = FormattedSink("json", in_kernel=False, footer=True)
    sink.start("gpt-4o-mini")
    for delta in ('{"a"', ': 1}'):
        sink.write(delta)
    sink.finish(Reply(text='{"a": 1}', model="gpt-4o-mini", usage=Usage(10, 5), total_time=0.25, cost=0.0000045))
    assert capsys.readouterr().out == '{\n  "a": 1\n}\n[gpt-4o-mini · 10 in · 5 out tokens · 0.2 s · $0.0000045]\n'
    sink = FormattedSink("code", in_kernel=False, footer=False)
    sink.start("m")
    sink.write("```py\nx = 1\n")
    sink.finish(Reply(text="```py\nx = 1\n", model="m", status="interrupted"))
    assert capsys.readouterr().out == ("```py\nx = 1\n\n[no code block in the answer: the next cell was left alone]\n"
                                       "[answer interrupted: partial text kept]\n")
    with pytest.raises(ValueError, match="kind must be 'json' or 'code'"):
        FormattedSink("xml")


def test_in_a_kernel_the_raw_text_streams_on_the_repaint_policy_then_the_result_replaces_it(
        capsys: pytest.CaptureFixture[str]) -> None:
    area, clock = OutputArea(), FakeClock(500.0)
    with FormattedSink("code", publisher=area, clock=clock, trailing=False, footer=True) as sink:
        sink.start("m")
        assert list(area.outputs.values()) == [{"text/plain": "…"}]
        answer = "Here:\n\n```python\nprint(1)\n```\n"
        for char in answer:  # one character every 10 ms: a repaint every 0.1 s, not per token
            sink.write(char)
            clock.now += 0.01
        shown = [data["text/plain"] for _, data, update in area.messages if update]
        assert len(shown) == 3 and shown[0] == "H" and answer.startswith(shown[-1])
        sink.finish(Reply(text=answer, model="m", usage=Usage(3, 9), total_time=0.5))
    answer_id, footer_id = area.outputs
    assert area.outputs[answer_id] == {"text/plain": "print(1)", "text/markdown": "```python\nprint(1)\n```"}
    assert area.outputs[footer_id] == {"text/markdown": "<sub>m · 3 in · 9 out tokens · 0.5 s</sub>",
                                       "text/plain": "[m · 3 in · 9 out tokens · 0.5 s]"}
    assert capsys.readouterr().out == ""


def test_a_stalled_stream_is_shown_by_the_repainter_thread() -> None:
    """FormattedSink had its own throttle and no trailing repaint; now a stall is shown."""
    import threading

    class Waiting(OutputArea):
        def __init__(self) -> None:
            super().__init__()
            self.event = threading.Event()

        def show(self, display_id: str, data: dict[str, str], *, update: bool) -> None:
            super().show(display_id, data, update=update)
            if data.get("text/plain") == '{"a": 1}':
                self.event.set()

    area = Waiting()
    with FormattedSink("json", publisher=area, interval=0.05) as sink:
        sink.start("m")
        sink.write('{"a"')
        sink.write(': 1}')  # not due yet: shown by the helper thread once the interval is up
        assert area.event.wait(timeout=30)
        sink.finish(Reply(text='{"a": 1}', model="m"))
    answer, footer = area.outputs.values()
    assert answer == {"text/plain": '{\n  "a": 1\n}', "text/markdown": '```json\n{\n  "a": 1\n}\n```'}
    assert footer == {"text/markdown": "<sub>m</sub>", "text/plain": "[m]"}
