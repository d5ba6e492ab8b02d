"""ChatPanel: an ipywidgets chat UI over a Chatbot or a named session shared with ``%%chat``.

Thin by design: the Chatbot owns the conversation (the panel redraws its bubbles from
``bot.history``), ``bubbles.py`` draws them (model output made safe by ``html.py``), and the
panel only wires widgets to ``ask``/``stop``/``reset``. Answers stream in a worker thread so Stop and other cells
keep working; the streaming bubble is repainted on the policy of every streaming view (a
``LiveSink``: about 10 times a second, never per token, and once more when the stream stalls), so
long answers do not flood IOPub.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import ipywidgets as widgets  # type: ignore[import-untyped]

from ..core.errors import ChatError
from ..core.repaint import DEFAULT_INTERVAL
from ..core.reply import LiveSink, Reply
from ..core.sessions import DEFAULT_SESSION
from .bubbles import CSS, StreamingBubble, bubble_html
from .footer import status_line
from .html import escape
from .tool_calls import CallsView, tool_turns, turn_html

if TYPE_CHECKING:
    from ..core.chatbot import Chatbot
    from ..core.messages import ImageRef, Message
    from ..core.reply import ToolCall
    from ..core.sessions import Sessions
    from ..core.tool_loop import Approval

# Shift+Enter in the panel's input clicks its Send button (ipywidgets has no key events). It is
# registered on window in the capture phase so it sees the key before anything in the page.
# Front ends that do not run JavaScript outputs (VS Code) keep Shift+Enter as a newline; Send
# still works there.
SHORTCUT_JS = """
(function () {
  if (window.__llmchatShortcut) { return; }
  window.__llmchatShortcut = true;
  window.addEventListener('keydown', function (event) {
    if (event.key !== 'Enter' || !event.shiftKey) { return; }
    var target = event.target;
    if (!target || target.tagName !== 'TEXTAREA' || !target.closest('.llmchat-input')) { return; }
    // Ours from here on: no newline is typed, and nothing else sees the key.
    event.preventDefault();
    event.stopPropagation();
    var panel = target.closest('.llmchat-panel');
    var send = panel && panel.querySelector('button.llmchat-send');
    if (send && !send.disabled) { send.click(); }
  }, true);
})();
"""

MESSAGES_HEIGHT = "min(460px, 60vh)"  # the message area: bounded, scrolled on its own
TOP_LOGPROBS = 5  # alternatives asked for per token when "token probabilities" is ticked
T = TypeVar("T")


class _PanelSink(LiveSink):
    """Streams one answer into its bubble on the repaint policy of every view; its tool calls show
    as blocks where they came (``tool_calls``), a confirm=True call's Approve / Deny under them."""

    def __init__(self, bubble: StreamingBubble, interval: float, on_start: Callable[[], None]) -> None:
        super().__init__(interval=interval)
        self.bubble = bubble
        self.on_start = on_start
        self.started = False
        self.writes = 0
        self.paints = 0
        self._calls: list[CallsView] = []  # each group of calls, in order
        self._calls_at = -1  # where in the answer the last group came

    def _show_start(self, model: str) -> None:
        self.started = True
        self.bubble.set_label(model)
        self.on_start()

    def _arrived(self, text: str, now: float) -> None:
        self.writes += 1

    def _paint(self) -> None:
        self.paints += 1
        self._collect()
        if not self.bubble.paint(self._text):  # only a half-typed marker so far: the next delta shows at once
            self._repainter.nothing_shown()

    def _show_final(self, reply: Reply) -> None:
        self.bubble.finish(self._text, reply.status if reply.text or reply.calls else "complete")

    # -- tool calls: their blocks in the bubble where they came, Approve / Deny under them -------
    def tool_started(self, call: ToolCall) -> None:
        with self._repainter.lock:
            self._collect()
            view = self._calls[-1] if self._calls else None
            if view is None or self._calls_at != len(self._text):
                view = CallsView()
                self._calls.append(view)
                self._calls_at = len(self._text)
                self.bubble.add_block(self._text, view.widget)
            view.calls.append(call)
            view.show()

    def tool_finished(self, call: ToolCall) -> None:
        with self._repainter.lock:
            for view in self._calls:
                if any(shown is call for shown in view.calls):
                    view.show()

    def approve_tool(self, approval: Approval) -> bool:
        """Approve / Deny under the call; the panel's Stop ends the wait (see ``approval``)."""
        from .approval import ApprovalButtons

        view = next((v for v in self._calls if any(c is approval.call for c in v.calls)), None)
        buttons = ApprovalButtons(approval)
        with self._repainter.lock:
            if view is not None:
                view.show(waiting=approval.call)
            self.bubble.add_block(self._text, buttons.widget, after=view.widget if view is not None else None)
        try:
            approved = buttons.wait()
            if not approval.stopped:
                approval.call.approved = approved  # the block says so before the call runs
            return approved
        finally:
            with self._repainter.lock:
                self.bubble.remove_block(buttons.widget)
                if view is not None:
                    view.show()
            buttons.close()


class ChatPanel:
    """A chat UI for ``bot`` (a Chatbot) or for session ``session`` of a Sessions registry.

    With Sessions the panel looks the session up on every send, so it and ``%%chat -s name``
    continue the same conversation. ``models``: names offered when the endpoint's /models does
    not answer. Display it by making it a cell's last expression (or ``display(panel)``).
    """

    def __init__(self, bot_or_sessions: Chatbot | Sessions, *, session: str = DEFAULT_SESSION,
                 models: Sequence[str] = (), fetch_models: bool = True,
                 interval: float = DEFAULT_INTERVAL) -> None:
        from ..core.sessions import Sessions

        self.sessions: Sessions | None = None
        self._bot: Chatbot | None = None
        if isinstance(bot_or_sessions, Sessions):
            self.sessions = bot_or_sessions
        else:
            self._bot = bot_or_sessions
        self.session = session
        self.interval = interval
        self.configured_models = list(models)
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._listening: Chatbot | None = None
        self._bubbles: dict[int, tuple[Message, widgets.Widget]] = {}
        self._updating = False  # set while the panel itself writes the system box
        self._choosing = False  # set while the panel itself fills the model dropdown
        self.last_reply: Reply | None = None
        self.last_sink: _PanelSink | None = None
        # id(answer message) -> (the message, its logprobs): answers asked with token probabilities
        self._token_views: dict[int, tuple[Message, list[dict[str, Any]]]] = {}
        # The calls answers made, by id (with their outcome and time, which the history does not
        # keep), and how a turn that ended with calls and no answer ended: id(last message) -> status
        self._known_calls: dict[str, ToolCall] = {}
        self._call_endings: dict[int, tuple[Message, str]] = {}
        self.models_ready = threading.Event()  # set once refresh_models() has filled the dropdown
        self._status_shown = 0  # how many times the status line was written (a later write wins)
        self._build()
        self.refresh()
        if fetch_models:
            threading.Thread(target=self.refresh_models, name="llmchat-models", daemon=True).start()
        else:
            self.models_ready.set()

    # -- widgets -------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = widgets.Layout
        self.title = widgets.HTML()
        self.messages = widgets.VBox(layout=layout(width="100%", flex="0 0 auto"))
        self.messages.add_class("llmchat-messages")
        # A fixed-height area with its own scroll, so the input and the buttons below it stay put
        # while an answer streams and after New chat. Its flow is reversed (the messages sit at its
        # bottom): the browser keeps the newest text in view as it grows, with no script.
        self.scroller = widgets.Box([self.messages], layout=layout(
            height=MESSAGES_HEIGHT, overflow="auto", flex_flow="column-reverse", width="100%"))
        self.scroller.add_class("llmchat-scroll")
        self.input = widgets.Textarea(placeholder="Ask something… (Shift+Enter sends)", rows=3,
                                      layout=layout(width="auto"))
        self.input.add_class("llmchat-input")
        self.send_button = widgets.Button(description="Send", button_style="primary", icon="paper-plane")
        self.send_button.add_class("llmchat-send")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.stop_button.add_class("llmchat-stop")
        self.new_button = widgets.Button(description="New chat", icon="file")
        self.new_button.add_class("llmchat-new")
        self.upload = widgets.FileUpload(accept="image/*", multiple=True, description="Attach")
        self.thumbnails = widgets.HBox()
        self.model = widgets.Dropdown(description="model", layout=layout(width="260px"))
        self.temperature = widgets.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.05, description="temperature",
                                               readout_format=".2f", style={"description_width": "initial"},
                                               tooltip="sent only when moved from the session's value")
        self.max_tokens = widgets.BoundedIntText(value=0, min=0, max=1_000_000, description="max tokens",
                                                 style={"description_width": "initial"},
                                                 layout=layout(width="180px"), tooltip="0: the session's default")
        self.system = widgets.Textarea(placeholder="System prompt (optional)", rows=2, continuous_update=False,
                                       layout=layout(width="auto"))
        self.logprobs = widgets.Checkbox(value=False, description="token probabilities", indent=False,
                                         layout=layout(width="auto"),
                                         tooltip="show each answer's tokens shaded by their probability")
        self.status = widgets.HTML()
        self.status.add_class("llmchat-status")

        self.send_button.on_click(lambda _: self.send())
        self.stop_button.on_click(lambda _: self.stop())
        self.new_button.on_click(lambda _: self.new_chat())
        self.upload.observe(lambda _: self._show_thumbnails(), names="value")
        self.system.observe(self._on_system, names="value")
        self.model.observe(self._on_model, names="value")

        wrap = layout(flex_flow="row wrap")  # narrow outputs wrap the controls instead of overflowing
        self.widget = widgets.VBox([
            widgets.HTML(CSS), self.title, self.scroller, self.thumbnails, self.input,
            widgets.HBox([self.send_button, self.stop_button, self.new_button, self.upload], layout=wrap),
            widgets.HBox([self.model, self.temperature, self.max_tokens, self.logprobs], layout=wrap),
            self.system, self.status,
        ])
        self.widget.add_class("llmchat-panel")

    def _ipython_display_(self) -> None:
        from IPython.display import Javascript, display

        display(self.widget)
        display(Javascript(SHORTCUT_JS))

    # -- the session ---------------------------------------------------------------------------
    @property
    def bot(self) -> Chatbot:
        """The Chatbot questions go to (looked up by name when the panel shows a session)."""
        bot = self._bot if self.sessions is None else self.sessions.get(self.session)
        assert bot is not None
        if bot is not self._listening:
            if self._listening is not None and self._on_reply in self._listening.reply_listeners:
                self._listening.reply_listeners.remove(self._on_reply)
            bot.reply_listeners.append(self._on_reply)
            self._listening = bot
        return bot

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def refresh(self) -> None:
        """Redraw from the session: bubbles from its history, its model and system prompt."""
        bot = self.bot
        self.title.value = (f"<b>llmchat</b> · session <code>{escape(self.session)}</code>"
                            if self.sessions is not None else "<b>llmchat</b>")
        self._updating = True
        try:
            self.temperature.value = float(bot.params.get("temperature", 1.0))
            self._temperature_default = self.temperature.value
            self.max_tokens.value = 0
        finally:
            self._updating = False
        self._show_settings()
        self._sync()

    def _show_settings(self) -> None:
        """Show the session's model and system prompt (``%chat model``/``system`` may change them)."""
        bot = self.bot
        self._updating = True
        try:
            if self.model.value != bot.model:
                self._set_model_options(self.model.options, bot.model)
            if self.system.value != (bot.system or ""):
                self.system.value = bot.system or ""
        finally:
            self._updating = False

    def refresh_models(self) -> list[str]:
        """Offer the endpoint's models (GET /models), then those of every configured provider by the
        name ``-m`` takes ("groq:llama-3.3-70b-versatile", "ollama:qwen2.5:7b"): what ``%chat models``
        lists (a hosted provider with its key set, a local server that answers). Configured names
        stay offered. What did not answer is said in the status line, a line each. The panel runs
        this in a thread of its own, so a slow server never holds up the panel or the kernel."""
        from ..core.providers import provider_model_names

        lines: list[tuple[str, bool]] = []  # (what did not answer and why, whether it is an error)
        shown = self._status_shown
        try:
            bot = self.bot
            endpoint = _listed(bot.client.list_models, "could not list the models", lines) or []
            self._set_model_options(endpoint, bot.model)  # now: local servers may take seconds to answer
            listed = _listed(lambda: provider_model_names(bot.client), "could not list the providers' models",
                             lines)
            names, notes = listed if listed else ([], [])
            lines += [(note, False) for note in notes]  # a local server that is not running: a fact
            self._set_model_options([*endpoint, *names], self.bot.model)
            # Why a list is missing stays in the menu's tooltip; the status line says it too unless a
            # question was asked or answered meanwhile (its status is the one to see).
            self.model.tooltip = "\n".join(" ".join(text.split()) for text, _ in lines) or None
            if lines and self._status_shown == shown:
                self._set_status_lines(lines)
        finally:
            self.models_ready.set()
        return list(self.model.options)

    def _set_model_options(self, names: Sequence[str], current: str) -> None:
        options = list(dict.fromkeys([*names, *self.configured_models, current]))
        with self._lock:
            self._choosing = True  # the panel sets these itself: not a user's choice of model
            try:
                self.model.options = options
                self.model.value = current
            finally:
                self._choosing = False

    def _on_model(self, change: dict[str, Any]) -> None:
        """Picking a model sets the session's model, as ``%chat model NAME -s SESSION`` would: a
        prefixed name ("groq:...") sends the next question to its provider, as ``-m groq:...`` does."""
        with self._lock:  # a choice made while the list is refilled (in its thread) is taken after it
            chosen = change["new"]
            if self._choosing or not chosen:
                return
            self.bot.model = chosen
            if self.model.value != chosen and chosen in self.model.options:  # the refill showed the old one
                self._set_model_options(self.model.options, chosen)

    def _on_system(self, change: dict[str, Any]) -> None:
        if not self._updating:
            self.bot.system = change["new"].strip() or None

    def _on_reply(self, reply: Reply) -> None:
        """Every finished answer of the session, the panel's own or a ``%%chat`` cell's."""
        self.last_reply = reply
        self._keep_token_view(reply)
        self._keep_calls(reply)
        self._set_status(status_line(reply), error=reply.status == "failed")
        if threading.current_thread() is not self._thread:
            self._sync()  # asked elsewhere (%%chat): show the new turn here too
            self._show_settings()

    # -- actions -------------------------------------------------------------------------------
    def overrides(self) -> dict[str, Any]:
        """Per-question parameters from the controls; only what differs from the session's own."""
        options: dict[str, Any] = {}
        if self.temperature.value != self._temperature_default:
            options["temperature"] = self.temperature.value
        if self.max_tokens.value > 0:
            options["max_tokens"] = self.max_tokens.value
        if self.logprobs.value:
            options.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
        return options

    def send(self, question: str | None = None) -> threading.Thread | None:
        """Ask the input's text (or ``question``) with the attached images, in a worker thread.

        Returns the thread (``wait()`` joins it), or None when there is nothing to send or an
        answer is still streaming.
        """
        if self.busy:
            self._set_status("an answer is still streaming: Stop it first", error=True)
            return None
        text = self.input.value if question is None else question
        attachments = [(item["name"], item["type"], bytes(item["content"])) for item in self.upload.value]
        if not text.strip() and not attachments:
            self._set_status("type a question first", error=True)
            return None
        bot = self.bot
        self._show_settings()
        options = self.overrides()
        draft = (self.input.value, self.upload.value)
        answer = StreamingBubble(bot.model)
        with self._lock:
            self.messages.children = (*self.messages.children, self._user_bubble(text, attachments),
                                      answer.widget)

        def on_start() -> None:  # the request is on its way: clear the input for the next question
            self.input.value = ""
            self.upload.value = ()

        sink = _PanelSink(answer, self.interval, on_start)
        self.last_sink = sink
        self._set_status(f"asking {bot.model}…")
        thread = threading.Thread(target=self._ask, name="llmchat-panel", daemon=True,
                                  args=(bot, text, [data for _, _, data in attachments], options, sink, draft))
        self._thread = thread
        self._set_buttons(streaming=True)
        thread.start()
        return thread

    def _ask(self, bot: Chatbot, text: str, images: list[bytes], options: dict[str, Any],
             sink: _PanelSink, draft: tuple[str, Any]) -> None:
        failure: str | None = None
        try:
            with sink:
                bot.ask(text, images=images, sink=sink, **options)
        except ChatError as error:
            failure = str(error)
        except Exception as error:
            failure = f"{type(error).__name__}: {error}".splitlines()[0]
        self._sync()
        if failure is not None:
            if not sink.writes and not self.input.value:  # nothing recorded: give the question back
                self.input.value, self.upload.value = draft
            if not sink.started:  # failed before sending (bad input): no reply to report
                self._set_status(failure, error=True)
        self._set_buttons(streaming=False)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the answer being streamed has finished (for scripts and tests)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def stop(self) -> None:
        """End the streaming answer now; the partial text is kept and marked."""
        if self.busy:
            self.bot.stop()

    def new_chat(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        if self.busy:
            self.bot.stop()
            self.wait()
        self.bot.reset()
        self.last_reply = None
        self._token_views.clear()
        self._known_calls.clear()
        self._call_endings.clear()
        self._sync()
        self._set_status("new chat")

    def close(self) -> None:
        """Stop listening to the session and close the widgets; the conversation itself is kept."""
        if self.busy:
            self.stop()
            self.wait()
        if self._listening is not None and self._on_reply in self._listening.reply_listeners:
            self._listening.reply_listeners.remove(self._on_reply)
        self._listening = None
        _close_tree(self.widget)

    # -- drawing -------------------------------------------------------------------------------
    def _sync(self) -> None:
        """Make the bubbles match the session's history, reusing the widgets already drawn."""
        with self._lock:
            drawn, self._bubbles = self._bubbles, {}
            children = []
            for message, calls in tool_turns(self.bot.history):  # tool calls drawn with their answer
                entry = drawn.get(id(message))
                if entry is None or entry[0] is not message:
                    entry = (message, self._message_bubble(message, calls))
                self._bubbles[id(message)] = entry
                children.append(entry[1])
            old = [w for w in self.messages.children if all(w is not c for c in children)]
            self.messages.children = tuple(children)
            for widget in old:
                _close_tree(widget)  # the streaming bubble and pending user bubble, now redrawn

    def _message_bubble(self, message: Message, calls: Sequence[Message] = ()) -> widgets.Widget:
        if message.role == "user":
            images = [_image_bytes(ref) for ref in message.images]
            return self._user_bubble(message.text, [item for item in images if item is not None])
        drawn_calls = turn_html(calls, self._known_calls) if calls else ""
        if message.role == "tool":  # calls no answer followed: how the turn ended, if the panel saw it
            ending = self._call_endings.get(id(message))
            status = ending[1] if ending is not None and ending[0] is message else "complete"
            model = next((m.model for m in calls if m.model), None)
            return widgets.HTML(bubble_html("assistant", "", status=status, label=model or "assistant",
                                            calls=drawn_calls))
        kept = self._token_views.get(id(message))
        return widgets.HTML(bubble_html("assistant", message.text, status=message.status,
                                        label=message.model or "assistant",
                                        logprobs=kept[1] if kept is not None and kept[0] is message else None,
                                        calls=drawn_calls))

    def _keep_calls(self, reply: Reply) -> None:
        """Remember the calls of the answer just recorded (their outcome and time), and how it ended
        when no answer followed them (stopped, max_tool_rounds: the bubble says so)."""
        if not reply.calls:
            return
        self._known_calls.update((call.id, call) for call in reply.calls)
        history = self.bot.history
        if history and history[-1].role == "tool":
            self._call_endings[id(history[-1])] = (history[-1], reply.status)

    def _keep_token_view(self, reply: Reply) -> None:
        """Remember the token probabilities of the answer just recorded, for its bubble."""
        history = self.bot.history if reply.logprobs else []
        if history and history[-1].role == "assistant" and history[-1].text == reply.text:
            self._token_views[id(history[-1])] = (history[-1], reply.logprobs or [])

    def _user_bubble(self, text: str, images: Sequence[tuple[str, str, bytes]]) -> widgets.Widget:
        bubble = widgets.HTML(bubble_html("user", text, label="you"))
        if not images:
            return bubble
        thumbnails = widgets.HBox([_thumbnail(kind, data) for _, kind, data in images],
                                  layout=widgets.Layout(margin="0 0 0 15%"))  # under the bubble
        return widgets.VBox([bubble, thumbnails])

    def _show_thumbnails(self) -> None:
        old = self.thumbnails.children
        self.thumbnails.children = tuple(_thumbnail(item["type"], bytes(item["content"]))
                                         for item in self.upload.value)
        for widget in old:
            widget.close()

    def _set_buttons(self, *, streaming: bool) -> None:
        self.send_button.disabled = streaming
        self.stop_button.disabled = not streaming

    def _set_status(self, text: str, *, error: bool = False) -> None:
        self._status_shown += 1
        self.status.value = _status_span(text, error)

    def _set_status_lines(self, lines: Sequence[tuple[str, bool]]) -> None:
        """Several facts at once, a line each (their text made one line: no traceback, no layout)."""
        self._status_shown += 1
        self.status.value = "<br>".join(_status_span(" ".join(text.split()), error) for text, error in lines)


def _status_span(text: str, error: bool) -> str:
    """One fact of the status line, escaped, styled as an error or as information."""
    return f'<span class="{"llmchat-error" if error else "llmchat-info"}">{escape(text)}</span>'


def _listed(ask: Callable[[], T], failure: str, lines: list[tuple[str, bool]]) -> T | None:
    """What ``ask`` answers, or None with a line saying why it did not (an endpoint without a model
    list, 404/405/501, is a fact, not an error)."""
    try:
        return ask()
    except ChatError as error:
        lines.append((f"{failure}: {error}", getattr(error, "status", None) not in (404, 405, 501)))
    except Exception as error:  # whatever went wrong, a line in the status, never a traceback
        lines.append((f"{failure}: {type(error).__name__}: {error}", True))
    return None


def _close_tree(widget: widgets.Widget) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()


def _thumbnail(mime: str, data: bytes) -> widgets.Image:
    kind = mime.split("/", 1)[-1] or "png"
    return widgets.Image(value=data, format=kind, layout=widgets.Layout(max_width="96px", max_height="96px",
                                                                        margin="2px"))


def _image_bytes(ref: ImageRef) -> tuple[str, str, bytes] | None:
    """The bytes of an image sent as a data URL (http URLs are not fetched for a thumbnail)."""
    if not ref.url.startswith("data:") or ";base64," not in ref.url:
        return None
    header, payload = ref.url.split(",", 1)
    mime = header[5:].split(";", 1)[0] or "image/png"
    return (ref.source or "image", mime, base64.b64decode(payload))


def show_panel(sessions: Sessions, name: str = DEFAULT_SESSION, **options: Any) -> ChatPanel:
    """Display a panel for session ``name`` (what ``%chat panel`` does) and return it."""
    from IPython.display import display

    panel = ChatPanel(sessions, session=name, **options)
    display(panel)
    return panel
