"""ChatPanel logic against the real loopback server: send, stop, new chat, model switch,
attachments, shared sessions, failures, throttled repaints. Widgets run without a front end."""

from __future__ import annotations

import datetime
import io
import socket
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from jupyter_llmchat import Chatbot
from jupyter_llmchat.core.client import discovery
from jupyter_llmchat.core.models import PROVIDER_RECORDS
from jupyter_llmchat.core.reply import NullSink, status_notice
from jupyter_llmchat.core.sessions import Sessions
from jupyter_llmchat.notebook.bubbles import bubble_html
from jupyter_llmchat.notebook.footer import status_line
from jupyter_llmchat.notebook.html import escape, markdown_to_html
from jupyter_llmchat.notebook.panel import ChatPanel, show_panel
from jupyter_llmchat.server import LoopbackServer
from jupyter_llmchat.server.local_servers import LocalModel

TABLE_AND_CODE = "Here:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\nprint('hi')\n```\n"
PAYLOAD = '<img src=x onerror="window.__pwned=1"> and <script>window.__pwned=2</script>'


def closed_port() -> int:
    """A port of this machine where nothing listens (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(autouse=True)
def no_providers(monkeypatch: pytest.MonkeyPatch) -> int:
    """No provider of this machine shows in the model menu: no key is set and every local server's
    address is a port where nothing listens (returned; kernels started here inherit it). A test sets
    what it uses."""
    for record in PROVIDER_RECORDS.values():
        monkeypatch.delenv(record["base_url_env"], raising=False)
        for variable in record.get("key_env", ()):
            monkeypatch.delenv(variable, raising=False)
    port = closed_port()
    for name, record in PROVIDER_RECORDS.items():
        if record.get("local"):
            address = f"127.0.0.1:{port}" if name == "ollama" else f"http://127.0.0.1:{port}/v1"
            monkeypatch.setenv(record["base_url_env"], address)
    return port


def make_panel(server: LoopbackServer, **options: object) -> ChatPanel:
    bot = Chatbot("gpt-4o-mini", base_url=server.base_url)
    return ChatPanel(bot, fetch_models=False, **options)  # type: ignore[arg-type]


def wait_for_text(panel: ChatPanel) -> None:
    """Block until the streaming answer has delivered its first delta (a sync point, not a timing check)."""
    deadline = time.monotonic() + 30
    while not (panel.last_sink and panel.last_sink.writes):
        assert time.monotonic() < deadline, "no text streamed"
        time.sleep(0.01)


def png(color: str = "red", size: tuple[int, int] = (8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def upload_entry(data: bytes, name: str = "red.png") -> dict[str, object]:
    return {"name": name, "type": "image/png", "size": len(data), "content": memoryview(data),
            "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)}


def test_send_streams_a_markdown_answer_into_a_bubble(loopback: LoopbackServer) -> None:
    panel = make_panel(loopback)
    loopback.queue(reply=TABLE_AND_CODE)
    panel.input.value = "Show me a table and some code"
    thread = panel.send()
    assert thread is not None
    panel.wait()

    user, answer = panel.bot.history
    assert (user.text, answer.text, answer.status) == ("Show me a table and some code", TABLE_AND_CODE, "complete")
    assert loopback.requests[-1].body["messages"] == [{"role": "user", "content": "Show me a table and some code"}]
    user_bubble, answer_bubble = panel.messages.children
    assert user_bubble.value == bubble_html("user", "Show me a table and some code", label="you")
    assert answer_bubble.value == bubble_html("assistant", TABLE_AND_CODE, label="gpt-4o-mini")
    assert "<table>" in answer_bubble.value
    assert "<pre><code class=\"language-python\">print('hi')\n</code></pre>" in answer_bubble.value
    assert panel.input.value == ""
    assert (panel.send_button.disabled, panel.stop_button.disabled) == (False, True)
    assert panel.last_reply is not None
    assert panel.status.value == f'<span class="llmchat-info">{status_line(panel.last_reply)}</span>'


def test_stop_keeps_the_partial_answer_marked(loopback: LoopbackServer) -> None:
    panel = make_panel(loopback)
    loopback.queue(tokens=2000, rate=20.0)
    panel.send("Tell me a long story")
    wait_for_text(panel)
    assert (panel.send_button.disabled, panel.stop_button.disabled) == (True, False)
    panel.stop()
    panel.wait(timeout=30)
    assert not panel.busy

    _, answer = panel.bot.history
    assert answer.status == "interrupted"
    assert answer.text  # partial text was kept ...
    assert loopback.requests[-1].body["messages"][-1]["content"] == "Tell me a long story"
    bubble = panel.messages.children[-1].value
    assert bubble == bubble_html("assistant", answer.text, status="interrupted", label="gpt-4o-mini")
    assert status_notice("interrupted") in bubble and "llmchat-interrupted" in bubble
    assert panel.status.value.endswith(" · answer interrupted: partial text kept</span>")
    assert (panel.send_button.disabled, panel.stop_button.disabled) == (False, True)


def test_new_chat_forgets_the_conversation_but_keeps_the_system_prompt(loopback: LoopbackServer) -> None:
    panel = make_panel(loopback)
    panel.system.value = "Be brief."
    loopback.queue(reply="Hello!")
    panel.send("Hi")
    panel.wait()
    assert len(panel.messages.children) == 2

    panel.new_chat()
    assert panel.bot.history == []
    assert panel.messages.children == ()
    assert panel.bot.system == "Be brief."
    loopback.queue(reply="Again")
    panel.send("Hi again")
    panel.wait()
    assert loopback.requests[-1].body["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi again"}]


def test_model_dropdown_lists_endpoint_models_and_switches_model(loopback: LoopbackServer) -> None:
    panel = make_panel(loopback, models=["my-local-model"])
    names = panel.refresh_models()
    assert names == sorted(loopback.models) + ["my-local-model"]
    assert panel.model.value == "gpt-4o-mini"

    panel.model.value = "gpt-4.1-mini"  # the session's model, as %chat model would set it
    assert panel.bot.model == "gpt-4.1-mini"
    loopback.queue(reply="from 4.1 mini")
    panel.send("Which model?")
    panel.wait()
    assert loopback.requests[-1].body["model"] == "gpt-4.1-mini"
    assert panel.bot.history[-1].model == "gpt-4.1-mini"
    assert panel.messages.children[-1].value == bubble_html("assistant", "from 4.1 mini", label="gpt-4.1-mini")


def test_model_and_system_set_elsewhere_show_in_the_panel(loopback: LoopbackServer) -> None:
    panel = make_panel(loopback)
    panel.bot.model = "o4-mini"  # e.g. %chat model o4-mini, or bot.model = ... in a cell
    panel.bot.system = "Answer in French."
    loopback.queue(reply="Bonjour")
    panel.send("Hello")
    panel.wait()
    assert (panel.model.value, panel.system.value) == ("o4-mini", "Answer in French.")
    body = loopback.requests[-1].body
    assert body["model"] == "o4-mini"
    assert body["messages"][0] == {"role": "system", "content": "Answer in French."}


def test_model_dropdown_falls_back_to_configured_names_when_endpoint_is_down() -> None:
    with LoopbackServer() as server:
        base_url = server.base_url
    bot = Chatbot("gpt-4o-mini", base_url=base_url, max_retries=0)  # nothing listens there now
    panel = ChatPanel(bot, models=["gpt-4o", "llama3"], fetch_models=False)
    assert panel.refresh_models() == ["gpt-4o", "llama3", "gpt-4o-mini"]
    assert panel.model.value == "gpt-4o-mini"
    assert panel.status.value.startswith('<span class="llmchat-error">could not list the models: ')


def test_a_rejected_key_shows_in_the_status_line_when_the_models_are_listed() -> None:
    """GET /v1/models answering 401 (a bad key) is said in the status line, in one line, key hidden."""
    with LoopbackServer(api_key="sk-the-right-one") as server:
        bot = Chatbot("gpt-4o-mini", base_url=server.base_url, api_key="sk-wrong-key-1234", max_retries=0)
        panel = ChatPanel(bot, fetch_models=False)
        assert panel.refresh_models() == ["gpt-4o-mini"]
    status = panel.status.value
    assert status.startswith('<span class="llmchat-error">could not list the models: authentication failed (401) at ')
    assert "the API key was rejected" in status and "sk-wrong" not in status and "\n" not in status


def test_the_messages_scroll_in_a_bounded_area_above_the_input() -> None:
    """The message area has a fixed height and its own scroll, so the input and the buttons below
    it do not move while an answer grows (the browser test measures it)."""
    bot = Chatbot("gpt-4o-mini", base_url="http://127.0.0.1:9/v1", max_retries=0)
    panel = ChatPanel(bot, fetch_models=False)
    scroller = panel.scroller
    assert scroller.children == (panel.messages,)
    assert (scroller.layout.height, scroller.layout.overflow, scroller.layout.flex_flow) == (
        "min(460px, 60vh)", "auto", "column-reverse")
    children = panel.widget.children
    assert children.index(scroller) < children.index(panel.input) < children.index(panel.status)


def test_fetch_models_in_background(loopback: LoopbackServer) -> None:
    panel = ChatPanel(Chatbot("gpt-4o-mini", base_url=loopback.base_url))
    assert panel.models_ready.wait(30)
    assert set(panel.model.options) == set(loopback.models)


def test_temperature_and_max_tokens_are_sent_only_when_set(loopback: LoopbackServer) -> None:
    panel = make_panel(loopback)
    loopback.queue(reply="one", times=2)
    panel.send("first")
    panel.wait()
    first = loopback.requests[-1].body
    assert "temperature" not in first and "max_tokens" not in first

    panel.temperature.value = 0.3
    panel.max_tokens.value = 64
    panel.send("second")
    panel.wait()
    second = loopback.requests[-1].body
    assert (second["temperature"], second["max_tokens"]) == (0.3, 64)


def test_attachments_show_thumbnails_and_are_sent_as_images(loopback: LoopbackServer) -> None:
    panel = make_panel(loopback)
    data = png()
    panel.upload.value = (upload_entry(data),)
    assert len(panel.thumbnails.children) == 1
    assert panel.thumbnails.children[0].value == data

    loopback.queue(reply="A red square.")
    panel.send("What is this?")
    panel.wait()
    content = loopback.requests[-1].body["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "What is this?"}
    assert content[1]["type"] == "image_url"
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    user_bubble = panel.messages.children[0]
    bubble_html_widget, thumbs = user_bubble.children
    assert bubble_html_widget.value == bubble_html("user", "What is this?", label="you")
    assert len(thumbs.children) == 1 and thumbs.children[0].format == "png"
    assert panel.upload.value == () and panel.thumbnails.children == ()


def test_image_only_question_is_allowed(loopback: LoopbackServer) -> None:
    panel = make_panel(loopback)
    panel.upload.value = (upload_entry(png("blue")),)
    loopback.queue(reply="Blue.")
    assert panel.send("") is not None
    panel.wait()
    assert panel.bot.history[-1].text == "Blue."


def test_panel_and_magics_share_a_session(loopback: LoopbackServer) -> None:
    sessions = Sessions(lambda name: Chatbot("gpt-4o-mini", base_url=loopback.base_url))
    panel = ChatPanel(sessions, session="work", fetch_models=False)
    assert "work" in sessions and panel.bot is sessions.get("work")

    # a %%chat -s work cell asks through the same Chatbot: the panel shows that turn
    loopback.queue(reply="From a cell.")
    sessions.get("work").ask("Asked in a cell", sink=NullSink())
    assert [child.value for child in panel.messages.children] == [
        bubble_html("user", "Asked in a cell", label="you"),
        bubble_html("assistant", "From a cell.", label="gpt-4o-mini")]
    assert panel.status.value == f'<span class="llmchat-info">{status_line(panel.last_reply)}</span>'

    loopback.queue(reply="From the panel.")
    panel.send("And now from the panel")
    panel.wait()
    assert loopback.requests[-1].body["messages"] == [
        {"role": "user", "content": "Asked in a cell"},
        {"role": "assistant", "content": "From a cell."},
        {"role": "user", "content": "And now from the panel"}]
    assert [m.text for m in sessions.get("work").history][-1] == "From the panel."


def test_close_stops_listening_and_keeps_the_conversation(loopback: LoopbackServer) -> None:
    panel = make_panel(loopback)
    bot = panel.bot
    loopback.queue(reply="kept", times=2)
    panel.send("before close")
    panel.wait()
    assert bot.reply_listeners == [panel._on_reply]
    panel.close()
    assert bot.reply_listeners == []
    assert panel.widget.comm is None and panel.messages.comm is None
    bot.ask("after close", sink=NullSink())
    assert [m.text for m in bot.history] == ["before close", "kept", "after close", "kept"]


def test_show_panel_returns_a_panel_on_the_named_session(loopback: LoopbackServer) -> None:
    sessions = Sessions(lambda name: Chatbot("gpt-4o-mini", base_url=loopback.base_url))
    panel = show_panel(sessions, "notes", fetch_models=False)
    assert isinstance(panel, ChatPanel) and panel.session == "notes" and "notes" in sessions


def test_failed_request_gives_the_question_back_and_keeps_history(loopback: LoopbackServer) -> None:
    panel = make_panel(loopback)
    loopback.queue(fault="unauthorized")
    panel.input.value = "Will this work?"
    panel.send()
    panel.wait()
    assert panel.bot.history == []
    assert panel.messages.children == ()
    assert panel.input.value == "Will this work?"
    assert panel.last_reply is not None and panel.last_reply.status == "failed"
    assert panel.status.value.startswith('<span class="llmchat-error">')
    assert "request failed: " in panel.status.value


def test_bad_input_is_one_line_and_loses_nothing(loopback: LoopbackServer) -> None:
    panel = make_panel(loopback)
    panel.upload.value = (upload_entry(b"not an image at all", name="notes.png"),)
    panel.input.value = "Describe it"
    panel.send()
    panel.wait()
    assert loopback.requests == []
    assert panel.input.value == "Describe it" and len(panel.upload.value) == 1
    assert panel.status.value.startswith('<span class="llmchat-error">') and "\n" not in panel.status.value
    assert panel.messages.children == ()


def test_missing_key_is_one_line_and_loses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    panel = ChatPanel(Chatbot("gpt-4o-mini"), models=["gpt-4o"], fetch_models=False)
    assert panel.refresh_models() == ["gpt-4o", "gpt-4o-mini"]
    panel.input.value = "Hello?"
    panel.send()
    panel.wait()
    assert panel.input.value == "Hello?" and panel.messages.children == () and panel.bot.history == []
    assert panel.last_reply is not None and panel.last_reply.status == "failed"
    status = panel.status.value
    assert status == f'<span class="llmchat-error">{escape(status_line(panel.last_reply))}</span>'
    assert " · request failed: no API key and no base URL: set OPENAI_API_KEY" in status and "\n" not in status


def test_empty_question_is_refused_without_a_request(loopback: LoopbackServer) -> None:
    panel = make_panel(loopback)
    assert panel.send("   ") is None
    assert panel.status.value == '<span class="llmchat-error">type a question first</span>'
    assert loopback.requests == []


def test_send_while_streaming_is_refused(loopback: LoopbackServer) -> None:
    panel = make_panel(loopback)
    loopback.queue(tokens=500, rate=50.0)
    panel.send("long one")
    wait_for_text(panel)
    assert panel.send("second") is None
    assert panel.status.value == '<span class="llmchat-error">an answer is still streaming: Stop it first</span>'
    panel.stop()
    panel.wait(timeout=30)
    assert len(loopback.requests) == 1


def test_injection_payload_is_shown_as_text(loopback: LoopbackServer) -> None:
    panel = make_panel(loopback)
    loopback.queue(reply=PAYLOAD)
    panel.send("payload please")
    panel.wait()
    bubble = panel.messages.children[-1].value
    assert markdown_to_html(PAYLOAD) in bubble
    assert "<img" not in bubble and "<script" not in bubble
    assert "&lt;img src=x onerror=" in bubble and "&lt;script&gt;window.__pwned=2&lt;/script&gt;" in bubble


def test_streaming_repaints_are_throttled(loopback: LoopbackServer) -> None:
    panel = make_panel(loopback)
    loopback.queue(tokens=2000)
    panel.send("a long answer at full speed")
    panel.wait()
    sink = panel.last_sink
    assert sink is not None and sink.writes > 100
    # one paint per interval while streaming plus the final paint: far fewer than the deltas
    assert sink.paints < sink.writes / 10


def test_stop_is_thread_safe_from_another_thread(loopback: LoopbackServer) -> None:
    panel = make_panel(loopback)
    loopback.queue(tokens=2000, rate=20.0)
    panel.send("stream")
    wait_for_text(panel)
    stopper = threading.Thread(target=panel.stop)
    stopper.start()
    stopper.join()
    panel.wait(timeout=30)
    assert panel.bot.history[-1].status == "interrupted"


@pytest.mark.parametrize("status", ["truncated", "filtered"])
def test_other_endings_are_marked(loopback: LoopbackServer, status: str) -> None:
    panel = make_panel(loopback)
    loopback.queue(reply="cut here", finish_reason={"truncated": "length", "filtered": "content_filter"}[status])
    panel.send("q")
    panel.wait()
    answer = panel.bot.history[-1]
    assert answer.status == status
    assert panel.messages.children[-1].value == bubble_html("assistant", "cut here", status=status,
                                                            label="gpt-4o-mini")
    assert f"llmchat-{status}" in panel.messages.children[-1].value


def test_long_answers_resend_a_bounded_tail(loopback: LoopbackServer) -> None:
    panel = make_panel(loopback)
    loopback.queue(tokens=4000, rate=1000.0)
    panel.send("a long answer")
    panel.wait()
    sink = panel.last_sink
    assert sink is not None
    text = sink.text
    bubble = sink.bubble
    assert len(bubble.frozen) >= 3
    assert bubble.live_start > len(text) / 2  # most of the answer was frozen while it streamed
    # each repaint resends only the live tail, never the whole answer
    assert bubble.largest < len(markdown_to_html(text)) / 4
    assert panel.messages.children[-1].value == bubble_html("assistant", text, label="gpt-4o-mini")


def test_panel_notebook_runs_in_a_real_kernel(loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """notebooks/panel.ipynb in a real ipykernel: the panel displays as a widget (plus the
    Shift+Enter hook), and a cell and the panel continue one conversation through it."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("LLMCHAT_PANEL_BASE_URL", loopback.base_url)  # the kernel inherits it
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    nb = nbformat.read(Path(__file__).resolve().parents[2] / "notebooks" / "panel.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "from jupyter_llmchat.core.reply import NullSink\n"
        "assert panel.models_ready.wait(60)\n"
        "bot.ask('Asked in a cell', sink=NullSink())\n"
        "panel.send('Asked in the panel')\n"
        "panel.wait()\n"
        "print([m.text for m in bot.history])\n"
        "print(panel.messages.children[-1].value)"))
    loopback.queue(reply="Cell answer.")
    loopback.queue(reply="Panel **answer**.")
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()

    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    mimes = [set(output.get("data", {})) for output in code_cells[0].outputs]
    assert "application/vnd.jupyter.widget-view+json" in mimes[0]
    assert mimes[1] == {"application/javascript", "text/plain"}
    assert code_cells[1].outputs[0]["data"]["text/plain"] == "[]"
    assert code_cells[-1].outputs[0]["text"] == (
        "['Asked in a cell', 'Cell answer.', 'Asked in the panel', 'Panel **answer**.']\n"
        + bubble_html("assistant", "Panel **answer**.", label="gpt-4o-mini") + "\n")
    chats = [request for request in loopback.requests if request.path.endswith("/chat/completions")]
    assert [request.body["messages"][-1]["content"] for request in chats] == [
        "Asked in a cell", "Asked in the panel"]
    assert "/v1/models" in [request.path for request in loopback.requests]  # the dropdown asked


def test_token_probabilities_show_under_the_answer_display_safe(loopback: LoopbackServer) -> None:
    from jupyter_llmchat.notebook.html import sanitize_token_view
    from jupyter_llmchat.notebook.logprobs_view import logprobs_html

    panel = make_panel(loopback)
    panel.logprobs.value = True
    assert panel.overrides() == {"logprobs": True, "top_logprobs": 5}
    loopback.queue(reply=PAYLOAD)
    panel.send("Say something dangerous")
    panel.wait()
    sent = loopback.requests[-1].body
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 5)
    reply = panel.last_reply
    assert reply is not None and reply.logprobs
    answer_bubble = panel.messages.children[-1]
    assert answer_bubble.value == bubble_html("assistant", PAYLOAD, label="gpt-4o-mini", logprobs=reply.logprobs)
    view = sanitize_token_view(logprobs_html(reply.logprobs, open=False))
    assert answer_bubble.value.endswith(f"{view}</div></div>")
    assert "<img" not in answer_bubble.value and "<script" not in answer_bubble.value  # tokens stay text
    assert '<div class="llmchat-tokens"><span style="background-color: rgba(255, 127, 14, ' in view
    assert "probability: mean" in panel.status.value  # the footer's figures in the status line
    panel.logprobs.value = False
    loopback.queue(reply="plain")
    panel.send("And without?")
    panel.wait()
    assert panel.messages.children[-1].value == bubble_html("assistant", "plain", label="gpt-4o-mini")
    assert panel.messages.children[1].value == answer_bubble.value  # the first answer keeps its view
    panel.new_chat()
    assert panel._token_views == {}


# -- the model menu: every configured provider's models -------------------------------------------
def info_line(text: str) -> str:
    return f'<span class="llmchat-info">{escape(text)}</span>'


def refused(label: str, port: int) -> str:
    return f"{label} at http://127.0.0.1:{port} did not answer ([Errno 111] Connection refused)"


def test_model_menu_offers_every_configured_providers_models(loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch,
                                                             no_providers: int) -> None:
    """The endpoint's models, then each provider's by the name -m takes: a hosted provider whose key
    is set (its table's models; Anthropic, Groq, ... have no key here and are not offered), a local
    server that answers (what it serves). Those that did not answer say so, a line each."""
    monkeypatch.setenv("DEEPSEEK_API_KEY", "deepseek-key")
    models = [LocalModel("qwen2.5:7b", n_ctx=8192), LocalModel("gemma3:4b", n_ctx=8192, template="gemma")]
    with LoopbackServer(imitate="ollama", local_models=models, models=[]) as ollama:
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{ollama.port}")
        panel = make_panel(loopback, models=["my-local-model"])
        names = panel.refresh_models()
        asked = [(r.method, r.path) for r in ollama.requests]
    assert names == [*sorted(loopback.models), "deepseek:deepseek-chat", "deepseek:deepseek-reasoner",
                     "ollama:gemma3:4b", "ollama:qwen2.5:7b", "my-local-model"]
    assert tuple(panel.model.options) == tuple(names) and panel.model.value == "gpt-4o-mini"
    assert asked == [("GET", "/api/tags")]  # listing asks no model's details
    assert panel.status.value == "<br>".join(info_line(refused(label, no_providers))
                                             for label in ("LM Studio", "llama.cpp", "vLLM"))
    assert panel.model.tooltip == "\n".join(refused(label, no_providers) for label in ("LM Studio", "llama.cpp", "vLLM"))
    assert [r.path for r in loopback.requests] == ["/v1/models"]


def test_choosing_a_providers_model_sends_the_next_question_there(loopback: LoopbackServer,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Picking "deepseek:deepseek-chat" sends to DeepSeek's base URL (its variable) with its key, the
    model name without the prefix, the conversation so far: as Chatbot("deepseek:...") or -m would.
    Picking a local server's model goes to that server; a plain name goes back to the endpoint."""
    monkeypatch.setenv("DEEPSEEK_API_KEY", "deepseek-key")
    local = [LocalModel("qwen2.5:7b", n_ctx=8192)]
    with (LoopbackServer(api_key="deepseek-key", models=["deepseek-chat"]) as deepseek,
          LoopbackServer(imitate="ollama", local_models=local, models=[]) as ollama):
        monkeypatch.setenv("LLMCHAT_DEEPSEEK_BASE_URL", deepseek.base_url)
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{ollama.port}")
        panel = make_panel(loopback)
        panel.refresh_models()
        loopback.queue(reply="from the endpoint")
        panel.send("first")
        panel.wait()

        panel.model.value = "deepseek:deepseek-chat"  # the user's pick
        assert panel.bot.model == "deepseek:deepseek-chat"
        deepseek.queue(reply="from deepseek")
        panel.send("second")
        panel.wait()
        panel.model.value = "ollama:qwen2.5:7b"
        ollama.queue(reply="from ollama")
        panel.send("third")
        panel.wait()
        panel.model.value = "gpt-4o-mini"
        loopback.queue(reply="back home")
        panel.send("fourth")
        panel.wait()
        sent_deepseek = [(r.path, r.status, r.body["model"], [m["content"] for m in r.body["messages"]])
                         for r in deepseek.requests]
        sent_ollama = [(r.path, r.body.get("model")) for r in ollama.requests if r.path == "/v1/chat/completions"]
    assert sent_deepseek == [("/v1/chat/completions", 200, "deepseek-chat", ["first", "from the endpoint", "second"])]
    assert sent_ollama == [("/v1/chat/completions", "qwen2.5:7b")]
    chats = [r.body["model"] for r in loopback.requests if r.path == "/v1/chat/completions"]
    assert chats == ["gpt-4o-mini", "gpt-4o-mini"]
    assert [m.text for m in panel.bot.history] == ["first", "from the endpoint", "second", "from deepseek", "third",
                                                   "from ollama", "fourth", "back home"]
    assert panel.status.value.startswith('<span class="llmchat-info">gpt-4o-mini · ')


def test_providers_without_a_key_are_not_offered(loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """As in %chat models: a hosted provider is offered once its key variable is set, not before."""
    panel = make_panel(loopback)
    assert panel.refresh_models() == sorted(loopback.models)
    monkeypatch.setenv("GROQ_API_KEY", "groq-key")
    offered = panel.refresh_models()
    assert [name for name in offered if ":" in name] == [
        "groq:llama-3.1-8b-instant", "groq:llama-3.3-70b-versatile", "groq:meta-llama/llama-4-scout-17b-16e-instruct",
        "groq:meta-llama/llama-4-maverick-17b-128e-instruct", "groq:openai/gpt-oss-120b", "groq:openai/gpt-oss-20b",
        "groq:qwen/qwen3-32b", "groq:moonshotai/kimi-k2-instruct-0905"]


def test_a_failed_endpoint_lists_nothing_and_says_why_in_a_line(monkeypatch: pytest.MonkeyPatch,
                                                                no_providers: int) -> None:
    """The endpoint down (an error), LM Studio's address a server that does not speak its API, the
    others not running: each lists nothing and says why in one line; Ollama's models are offered."""
    with LoopbackServer() as gone:
        gone_url = gone.base_url
    with (LoopbackServer(imitate="ollama", local_models=[LocalModel("qwen2.5:7b", n_ctx=8192)], models=[]) as ollama,
          LoopbackServer() as not_lm_studio):
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{ollama.port}")
        monkeypatch.setenv("LLMCHAT_LMSTUDIO_BASE_URL", not_lm_studio.base_url)
        bot = Chatbot("gpt-4o-mini", base_url=gone_url, max_retries=0)  # nothing listens there now
        panel = ChatPanel(bot, models=["gpt-4o"], fetch_models=False)
        assert panel.refresh_models() == ["ollama:qwen2.5:7b", "gpt-4o", "gpt-4o-mini"]
        lm_studio = f"LM Studio at {not_lm_studio.root_url} did not answer (/api/v0/models answered 404)"
    lines = panel.status.value.split("<br>")
    assert lines[1:] == [info_line(lm_studio), info_line(refused("llama.cpp", no_providers)),
                         info_line(refused("vLLM", no_providers))]
    assert lines[0].startswith('<span class="llmchat-error">could not list the models: ')
    assert gone_url in lines[0] and "\n" not in panel.status.value and "Traceback" not in panel.status.value
    assert panel.model.tooltip.split("\n")[1:] == [lm_studio, refused("llama.cpp", no_providers),
                                                   refused("vLLM", no_providers)]


def test_model_names_from_servers_stay_text(loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A served model's name is shown as it is, in the dropdown (plain text, never HTML), and sent as it is."""
    with LoopbackServer(imitate="ollama", local_models=[LocalModel(PAYLOAD, n_ctx=8192)], models=[]) as ollama:
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{ollama.port}")
        panel = make_panel(loopback)
        panel.refresh_models()
        assert type(panel.model).__name__ == "Dropdown"  # its options are text: ipywidgets never renders them
        assert panel.model.options[-1] == f"ollama:{PAYLOAD}"
        assert panel.model._options_labels[-1] == f"ollama:{PAYLOAD}"
        panel.model.value = f"ollama:{PAYLOAD}"
        ollama.queue(reply="hi")
        panel.send("hello")
        panel.wait()
        sent = [r.body["model"] for r in ollama.requests if r.path == "/v1/chat/completions"]
    assert sent == [PAYLOAD]


def test_fetch_models_false_asks_no_one(loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", "deepseek-key")
    with LoopbackServer(imitate="ollama", local_models=[LocalModel("qwen2.5:7b", n_ctx=8192)], models=[]) as ollama:
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{ollama.port}")
        panel = make_panel(loopback, models=["gpt-4o"])
        assert panel.models_ready.is_set()
        assert (tuple(panel.model.options), loopback.requests, ollama.requests) == (("gpt-4o", "gpt-4o-mini"), [], [])


def test_a_silent_local_server_does_not_hold_up_the_panel(loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch,
                                                          no_providers: int) -> None:
    """The list is filled in a thread: the endpoint's models are offered and questions answered while
    a local server keeps the listing waiting; once it hangs up, the menu and the status say so."""
    monkeypatch.setattr(discovery, "PROBE_TIMEOUT", 600.0)  # the wait ends when the test hangs up
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        silent.settimeout(30)
        port = silent.getsockname()[1]
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
        panel = ChatPanel(Chatbot("gpt-4o-mini", base_url=loopback.base_url))
        connection, _ = silent.accept()  # the listing asks Ollama ...
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(4096)
            assert request.startswith(b"GET /api/tags HTTP/1.1\r\n")  # ... and gets no answer for now
            assert not panel.models_ready.is_set()
            assert tuple(panel.model.options) == tuple(sorted(loopback.models))  # the endpoint's are offered
            loopback.queue(reply="meanwhile")
            panel.send("still here?")
            panel.wait()
            assert panel.bot.history[-1].text == "meanwhile"
    assert panel.models_ready.wait(60)  # hung up: the listing ends
    assert tuple(panel.model.options) == tuple(sorted(loopback.models))
    hung_up = f"Ollama at http://127.0.0.1:{port} did not answer (Server disconnected without sending a response.)"
    assert panel.model.tooltip == "\n".join([hung_up, *(refused(label, no_providers)
                                                        for label in ("LM Studio", "llama.cpp", "vLLM"))])
    # the answer's status line stays: it came after the listing began
    assert panel.last_reply is not None
    assert panel.status.value == f'<span class="llmchat-info">{escape(status_line(panel.last_reply))}</span>'
