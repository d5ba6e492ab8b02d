"""--json and -f code: the answer's final form, and the sink outside a kernel."""

from __future__ import annotations

import json

import pytest

from jupyter_llmchat.core.reply import Reply, Usage
from jupyter_llmchat.notebook.formatted import FormattedSink, first_code_block, format_answer


@pytest.mark.parametrize("text, expected", [
    ("Use:\n\n```python\nprint(1)\n```\n", ("python", "print(1)")),
    ("```\nplain\n```", ("", "plain")),
    ("~~~bash\nls -l\n~~~", ("bash", "ls -l")),
    ("First:\n```sql\nSELECT 1;\n```\nSecond:\n```python\nx = 2\n```", ("sql", "SELECT 1;")),
    ("````markdown\n```python\ninner\n```\n````", ("markdown", "```python\ninner\n```")),
    ("  ```python\n  indented\n  ```", ("python", "  indented")),
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
