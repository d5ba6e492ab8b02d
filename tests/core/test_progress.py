"""RowProgress: the text bar in a terminal (exact text, timings masked), and the notebook's widget
bar in a real kernel during a real map (its final state read from the saved widget state)."""

from __future__ import annotations

import html
import io
import re

from support.kernel_notebook import run_cells

from jupyter_llmchat.core.models import format_cost, model_info
from jupyter_llmchat.core.progress import RowProgress
from jupyter_llmchat.core.reply import Usage
from jupyter_llmchat.core.rows import RowResult
from jupyter_llmchat.core.tokens import get_encoding

ENCODING = get_encoding("o200k_base")
TIMES = re.compile(r"\[\d\d:\d\d<(?:\?|\d\d:\d\d)\]")
SECONDS = re.compile(r"; \d+\.\d s")


def masked(text: str) -> str:
    return SECONDS.sub("; T s", TIMES.sub("[T]", text))


def test_the_text_bar_counts_rows_failures_tokens_and_cost_and_says_how_it_ended() -> None:
    out = io.StringIO()
    with RowProgress(4, resumed=1, file=out) as progress:
        progress.add(RowResult(0, "a", "done", usage=Usage(100, 20), cost=0.0012))
        progress.add_many([RowResult(1, "b", "failed", error="server error"),
                           RowResult(2, "c", "done", usage=Usage(10, 2), cost=None)])
        assert progress.postfix() == "1 failed, 132 tokens, $0.0012 + 1 unpriced"
        progress.note("interrupted", "interrupted: the same call asks the rows not answered")
    final = "map: 100%|##########| 4/4 rows, 1 failed, 132 tokens, $0.0012 + 1 unpriced, interrupted [T]"
    # repaints are throttled: the start, the note (a status always repaints), the final state, the summary
    assert masked(out.getvalue()) == (
        "\rmap:  25%|##5       | 1/4 rows [T]" f"\r{final}" f"\r{final}\n"
        "map: 3 of 4 rows done (1 answered before), 1 failed; 132 tokens, $0.0012 + 1 unpriced; T s; "
        "interrupted: the same call asks the rows not answered\n")
    progress.close()  # twice is harmless


def test_a_clean_run_ends_with_its_bar_line_only_and_counts_can_be_set_outright() -> None:
    out = io.StringIO()
    progress = RowProgress(10, description="batch", file=out)
    progress.set_counts(done=6, failed=1, tokens=700, cost=0.5)
    progress.set_counts(done=9, failed=1, tokens=1000, cost=0.75)
    assert (progress.done, progress.failed, progress.tokens, progress.cost) == (9, 1, 1000, 0.75)
    progress.close()
    assert masked(out.getvalue()).endswith(
        "\rbatch: 100%|##########| 10/10 rows, 1 failed, 1,000 tokens, $0.75 [T]\n")
    assert "batch: 9 of 10" not in out.getvalue()  # no summary line: the bar line says it all


def test_nothing_is_drawn_when_show_is_false_but_everything_is_counted(capsys) -> None:
    progress = RowProgress(2, show=False)
    progress.add(RowResult(0, "a", "done", usage=Usage(3, 4), cost=0.0))
    progress.note("stopped", "stopped: why")
    progress.close()
    assert capsys.readouterr() == ("", "")
    assert (progress.done, progress.tokens, progress.in_notebook) == (1, 7, False)
    assert SECONDS.sub("; T s", progress.summary()) == "map: 1 of 2 rows done, 0 failed; 7 tokens, $0; T s; stopped: why"


def test_an_unknown_price_says_so() -> None:
    progress = RowProgress(1, show=False)
    progress.add(RowResult(0, "a", "done", usage=Usage(3, 4), cost=None))
    assert progress.postfix() == "7 tokens, cost unknown"


KERNEL_MAP = """\
from jupyter_llmchat.server import LoopbackServer
from jupyter_llmchat.core.chatbot import Chatbot
server = LoopbackServer().start()
bot = Chatbot("gpt-4o-mini", base_url=server.base_url, api_key="k")
server.queue(fault="server_error")  # the first request fails for good (no retries): a failed row
for n in range(5):
    server.queue(reply="yes", times=1)
answers = bot.map([f"row {n}" for n in range(6)], concurrency=1, retries=0)
"""


def test_in_a_kernel_the_bar_is_the_notebook_widget_and_a_plain_summary_line_follows() -> None:
    run = run_cells([KERNEL_MAP, "print(answers, sorted(answers.errors))"])
    outputs = run.outputs(0)
    assert [o.output_type for o in outputs] == ["display_data", "stream"]
    assert "application/vnd.jupyter.widget-view+json" in outputs[0].data  # the widget, not text on stderr
    # each answered row: its prompt (OpenAI's rule: 3 per message + role + text, 3 to prime) and "yes"
    prompt = 3 + 3 + len(ENCODING.encode("user")) + len(ENCODING.encode("row 1"))
    tokens, cost = 5 * (prompt + 1), format_cost(sum([model_info("gpt-4o-mini").cost(prompt, 1)] * 5))
    assert (tokens, cost) == (55, "$0.000011")
    assert masked(run.stdout(0)) == f"map: 5 of 6 rows done, 1 failed; {tokens} tokens, {cost}; T s\n"
    assert run.stderr(0) == ""
    assert run.stdout(1) == "[None, 'yes', 'yes', 'yes', 'yes', 'yes'] [0]\n"
    # the widget's last state, as the saved notebook keeps it
    state = run.nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    models = list(state.values())
    bar = next(m["state"] for m in models if m["model_name"] == "FloatProgressModel")
    texts = [m["state"]["value"] for m in models if m["model_name"] == "HTMLModel"]
    assert (bar["value"], bar["max"]) == (6.0, 6.0)
    # tqdm writes the two texts beside the bar as HTML, padded with figure spaces
    shown = sorted(masked(html.unescape(text).replace("\u2007", " ")) for text in texts)
    assert shown == [f" 6/6 rows, 1 failed, {tokens} tokens, {cost} [T]", "map: 100%"]
    style = next(m["state"] for m in models if m["model_name"] == "ProgressStyleModel")
    assert style["bar_color"] == "#d9822b"  # not every row answered
    assert [m["model_name"] for m in models].count("FloatProgressModel") == 1  # one bar, repainted in place
