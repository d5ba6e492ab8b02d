"""Answers side by side (compare.py) through the real SDK against the loopback server: one output
redrawn in place, each column exact and display-safe, a failing model confined to its column, a
Ctrl-C stopping every answer (each keeps its text, marked); and ``%%chat -m a -m b`` in an in-process
IPython: a session per model that starts as a copy of the conversation and then keeps its own
thread, the dry run that sends nothing and makes no session, the options that show one answer."""

from __future__ import annotations

import _thread
import threading
import time
from html.parser import HTMLParser

import pytest
from IPython.core.error import UsageError
from support.chat_shell import chat_shell
from support.loopback_client import chat_bodies
from support.xss_corpus import dangers

from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.notebook.compare import CompareView, compare, session_name
from jupyter_llmchat.notebook.html import markdown_to_html
from jupyter_llmchat.notebook.magics import current, unload_ipython_extension

PAYLOAD = 'Careful: <img src=x onerror="window.__pwned=1"> and [x](javascript:alert(1))'


class Publisher:
    """Keeps every display message (the DisplayPublisher protocol)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bool, dict[str, str]]] = []

    def show(self, display_id: str, data: dict[str, str], *, update: bool) -> None:
        self.messages.append((display_id, update, data))

    def clear(self, *, wait: bool) -> None:
        raise AssertionError("the grid is never cleared")


class Columns(HTMLParser):
    """Each column's model label, answer HTML and notes, as a browser would split them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.labels: list[str] = []
        self.notes: list[str] = []
        self._into: str | None = None

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class") or ""
        if cls == "llmchat-column-model":
            self.labels.append("")
            self._into = "label"
        elif cls in ("llmchat-footer", "llmchat-notice"):
            self.notes.append("")
            self._into = "note"

    def handle_endtag(self, tag):
        if tag == "div":
            self._into = None

    def handle_data(self, data):
        if self._into == "label":
            self.labels[-1] += data
        elif self._into == "note":
            self.notes[-1] += data


def columns_of(markup: str) -> Columns:
    parsed = Columns()
    parsed.feed(markup)
    return parsed


def scripted(loopback, model: str, **script) -> Chatbot:
    """A bot whose requests carry their own script, so concurrent answers are each known."""
    return Chatbot(model, base_url=loopback.base_url, api_key="sk-compare", max_retries=0,
                   extra_body={"loopback": script})


def test_columns_stream_into_one_output_and_end_exact_and_display_safe(loopback):
    bots = [scripted(loopback, "gpt-4o", reply="# Four\n\n2 + 2 = **4**", rate=200.0),
            scripted(loopback, "gpt-4o-mini", reply=PAYLOAD, rate=200.0),
            scripted(loopback, "gpt-4.1", reply="Four.\n\n```python\nprint(2 + 2)\n```", rate=200.0)]
    publisher = Publisher()
    columns = compare(bots, "What is 2 + 2?", publisher=publisher, footer=False)
    assert [c.reply.text for c in columns] == ["# Four\n\n2 + 2 = **4**", PAYLOAD, "Four.\n\n```python\nprint(2 + 2)\n```"]
    assert [c.reply.status for c in columns] == ["complete"] * 3
    ids = {display_id for display_id, _, _ in publisher.messages}
    assert len(ids) == 1 and len(publisher.messages) > 2  # one output, redrawn in place as the answers came
    assert [update for _, update, _ in publisher.messages] == [False] + [True] * (len(publisher.messages) - 1)
    first, final = publisher.messages[0][2], publisher.messages[-1][2]
    assert columns_of(first["text/html"]).labels == ["gpt-4o", "gpt-4o-mini", "gpt-4.1"]
    assert first["text/html"].count("<i>waiting…</i>") == 3
    assert final["text/plain"] == ("── gpt-4o ──\n# Four\n\n2 + 2 = **4**\n\n── gpt-4o-mini ──\n" + PAYLOAD
                                   + "\n\n── gpt-4.1 ──\nFour.\n\n```python\nprint(2 + 2)\n```")
    for column in columns:
        assert f'<div class="llmchat-column-answer">{markdown_to_html(column.reply.text)}</div>' in final["text/html"]
    assert dangers(final["text/html"]) == []  # the payload is text; its link is gone
    assert "&lt;img src=x" in final["text/html"]
    for _, _, data in publisher.messages:
        assert dangers(data["text/html"]) == []  # every repaint, partial Markdown included


def test_each_column_has_its_footer_and_a_failure_stays_in_its_column(loopback):
    ok = scripted(loopback, "gpt-4o", reply="Fine.")
    missing = scripted(loopback, "no-such-model", reply="never")
    pricey = scripted(loopback, "gpt-4o-mini", reply="never")
    pricey.max_cost_per_question = 1e-9
    publisher = Publisher()
    columns = compare([ok, missing, pricey], "Hello?", publisher=publisher)
    assert (columns[0].reply.status, columns[1].reply.status, columns[2].reply) == ("complete", "failed", None)
    notes = columns_of(publisher.messages[-1][2]["text/html"]).notes
    assert notes[0].startswith("gpt-4o · 9 in · 2 out tokens · ") and " · first token " in notes[0]
    assert notes[0].endswith(" · $0.000043 · fp_loopback")
    assert notes[1].startswith("⚠ request failed: model 'no-such-model' is not available at ")
    assert notes[2] == "⚠ " + columns[2].error
    assert columns[2].error.startswith("this question could cost up to $0.0098 on gpt-4o-mini (9 prompt tokens")
    bodies = [r.body["model"] for r in loopback.requests if r.path.endswith("/chat/completions")]
    assert sorted(bodies) == ["gpt-4o", "no-such-model"]  # the refused question was never sent


def test_ctrl_c_stops_every_column_and_each_keeps_its_text(loopback):
    bots = [scripted(loopback, model, tokens=3000, rate=40.0) for model in ("gpt-4o", "gpt-4o-mini")]
    publisher = Publisher()
    view_columns: list = []

    def interrupt_once_both_wrote() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(view_columns) == 1 and all(column.parts for column in view_columns[0]):
                break
            time.sleep(0.01)
        _thread.interrupt_main()  # a real KeyboardInterrupt in the thread that waits, as Ctrl-C

    original = CompareView.start

    def start(view: CompareView) -> None:
        view_columns.append(view.columns)
        original(view)

    helper = threading.Thread(target=interrupt_once_both_wrote, daemon=True)
    helper.start()
    CompareView.start = start  # type: ignore[method-assign]
    try:
        columns = compare(bots, "Tell me a long story", publisher=publisher)
    finally:
        CompareView.start = original  # type: ignore[method-assign]
    helper.join()
    assert [column.reply.status for column in columns] == ["interrupted", "interrupted"]
    assert all(column.reply.text for column in columns)
    assert all(column.reply.text == column.text for column in columns)
    assert [bot.history[-1].status for bot in bots] == ["interrupted", "interrupted"]  # kept, marked
    notes = columns_of(publisher.messages[-1][2]["text/html"]).notes
    assert notes[0] == notes[2] == "⚠ answer interrupted: partial text kept"


# -- the magic ---------------------------------------------------------------------------------------
@pytest.fixture
def shell(loopback, monkeypatch: pytest.MonkeyPatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LLMCHAT_MODEL", "LLMCHAT_SYSTEM", "JUPYTER_LLMCHAT_STORE",
                 "LLMCHAT_MAX_COST_PER_QUESTION"):
        monkeypatch.delenv(name, raising=False)
    shell = chat_shell(loopback.base_url)
    yield shell
    unload_ipython_extension(shell)
    dict.pop(shell.config, "ChatMagics", None)


def test_each_model_answers_in_its_own_session_copied_from_the_conversation(shell, loopback, capsys):
    shell.run_line_magic("chat", "system 'Be brief.'")
    loopback.queue(reply="Hi there.")
    shell.run_cell_magic("chat", "", "Hello")
    capsys.readouterr()
    loopback.queue(reply="Same.", times=2)
    shell.run_cell_magic("chat", "-m gpt-4o -m gpt-4.1 -t 0.3", "What did I say?")
    out = capsys.readouterr().out  # outside a notebook: the columns as text, once
    assert out == ("Note: gpt-4.1 has a 1,047,576-token window, so a long conversation can cost dollars per question. "
                   "To refuse questions that could cost more than a limit: %config ChatMagics.max_cost_per_question "
                   "= 0.50\n── gpt-4o ──\nSame.\n\n── gpt-4.1 ──\nSame.\n")
    assert shell.user_ns["_chat"] == {"gpt-4o": "Same.", "gpt-4.1": "Same."}
    magics = current()
    assert magics.sessions.names() == ["default", "default/gpt-4.1", "default/gpt-4o"]
    compared = chat_bodies(loopback)[-2:]
    assert sorted(body["model"] for body in compared) == ["gpt-4.1", "gpt-4o"]
    for body in compared:  # each started as a copy of the conversation, with the cell's options
        assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"},
                                    {"role": "assistant", "content": "Hi there."},
                                    {"role": "user", "content": "What did I say?"}]
        assert body["temperature"] == 0.3
    assert len(magics.sessions.get("default").history) == 2  # the session itself is as it was
    model_bot = magics.sessions.get(session_name("default", "gpt-4o"))
    assert (model_bot.model, [m.text for m in model_bot.history]) == (
        "gpt-4o", ["Hello", "Hi there.", "What did I say?", "Same."])
    loopback.queue(reply="Alone.")
    shell.run_cell_magic("chat", "-s default/gpt-4o", "And now?")  # one model's thread, continued alone
    assert chat_bodies(loopback)[-1]["model"] == "gpt-4o" and len(chat_bodies(loopback)[-1]["messages"]) == 6
    loopback.queue(reply="Fresh.", times=2)
    shell.run_cell_magic("chat", "-m gpt-4o -m gpt-4.1 --new", "Start over")
    assert "Note:" not in capsys.readouterr().out  # the suggestion comes once
    assert all(body["messages"] == [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Start over"}] for body in chat_bodies(loopback)[-2:])


def test_a_dry_run_of_several_models_sends_nothing_and_makes_no_session(shell, loopback, capsys):
    loopback.queue(reply="Hi there.")
    shell.run_cell_magic("chat", "", "Hello")
    capsys.readouterr()
    sent = len(loopback.requests)
    shell.run_cell_magic("chat", "-m gpt-4o -m gpt-4o-mini --dry-run --max-tokens 100", "How much?")
    assert len(loopback.requests) == sent and current().sessions.names() == ["default"]
    estimates = shell.user_ns["_chat"]
    assert capsys.readouterr().out == f"{estimates['gpt-4o']}\n\n{estimates['gpt-4o-mini']}\n"
    assert str(estimates["gpt-4o"]).splitlines()[:3] == [
        "gpt-4o (nothing was sent)", "prompt: 22 tokens (1 earlier turn and the question)",
        "answer: 0 to 100 tokens (max_tokens)"]


@pytest.mark.parametrize("options,clash", [("--json", "--json"), ("-f code", "-f code"), ("--logprobs", "--logprobs"),
                                           ("--tools f", "--tools"), ("--notebook", "--notebook")])
def test_options_that_show_one_answer_are_refused_with_several_models(shell, loopback, options, clash):
    shell.user_ns["f"] = lambda: 1
    with pytest.raises(UsageError) as caught:
        shell.run_cell_magic("chat", f"-m gpt-4o -m gpt-4o-mini {options}", "x")
    assert str(caught.value) == (f"{clash} shows one answer: ask one model at a time with it, or drop it to compare "
                                 "models (nothing was sent)")
    assert chat_bodies(loopback) == []


@pytest.mark.parametrize("line,message", [
    ("-m gpt-4o -m gpt-4o", "-m gpt-4o is given twice: to compare models give different ones, e.g. -m gpt-4o "
                            "-m gpt-4o-mini (nothing was sent)"),
    ("-m ' '", "--model needs a model name, e.g. -m gpt-4o")])
def test_bad_model_lists_are_one_line(shell, loopback, line, message):
    with pytest.raises(UsageError) as caught:
        shell.run_cell_magic("chat", line, "x")
    assert str(caught.value) == message and chat_bodies(loopback) == []


def test_interrupting_the_kernel_stops_every_column(loopback, tmp_path):
    """The stop button (a real SIGINT to a real kernel) while two models stream: both stop at once,
    each keeps its partial text in its session, marked; the cell ends without an error."""
    import json

    from support.kernel_client import CleanKernel

    with CleanKernel(tmp_path) as kernel:
        reply, _ = kernel.execute(f'%load_ext jupyter_llmchat\n%config ChatMagics.base_url = "{loopback.base_url}"\n'
                                  "%config ChatMagics.store = ':memory:'")
        assert reply["status"] == "ok"
        loopback.queue(tokens=3000, rate=30.0, times=2)  # about 100 s each: the interrupt comes long before
        # stopped at the 6th update: both columns have text by then
        reply, outputs = kernel.execute("%%chat -m gpt-4o -m gpt-4o-mini\nTell me two long stories",
                                        interrupt_at_update=6)
        assert reply["status"] == "ok"  # an interrupt is not an error: the partial answers are the result
        final = [o for o in outputs if "data" in o][-1]["data"]["text/html"]
        assert final.count("⚠ answer interrupted: partial text kept") == 2, final
        reply, outputs = kernel.execute(
            "import json\nfrom jupyter_llmchat.notebook.magics import current\n"
            "bots = [current().sessions.get(n) for n in ('default/gpt-4o', 'default/gpt-4o-mini')]\n"
            "print(json.dumps([[b.history[-1].status, 0 < len(b.history[-1].text) < 12000, "
            "b.history[-1].text == _chat[b.model]] for b in bots]))")
        assert json.loads(outputs[-1]["text"]) == [["interrupted", True, True], ["interrupted", True, True]]
