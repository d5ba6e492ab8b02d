"""Chatbot: a conversation plus a client. ``ask`` builds the prompt window, streams the answer
to a sink, and records the turn only once the stream has ended. No IPython, no HTTP here.

Stop means stop (see ``stopping``): an ask has its StopToken from its first line, so ``stop()``
(from any thread, for every answer in flight) is never lost; preparing the request runs where a
stop abandons it at once, and the stream ends at once when closed. The first text comes without
waiting for a token vocabulary: a prompt whose byte count shows it fits is sent uncounted and
counted exactly once its answer has begun (for the footer, the ledger and the history).

Tools (``tools=``, ``Chatbot(tools=...)``, ``@bot.tool``): an answer may take several rounds, one
request each; between them the model's tool calls run (``tool_loop``). Each round is a request like
any other (the response cache replays rounds, never tool results), and the turn recorded at the
end holds every round's messages. Without tools an answer is the one round it always was.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from . import errors
from .batch_jobs import BatchJobStore, MemoryBatchJobs
from .chunks import StreamResult
from .client import ChatStream, import_sdk
from .conversation import Conversation, count_message, drop_oldest_turns
from .estimate import QuestionEstimate, check_cost, fit_target, question_estimate
from .messages import ImageRef, Message
from .models import ModelInfo, answer_reserve, model_info
from .params import REQUEST_PARAMS, check_params, check_whole
from .providers import Route, Routes, home_client
from .reply import STATUS_BY_FINISH, Reply, ReplySink, ReplyStatus, ToolCall, Usage, default_sink
from .stopping import Stopped, StopToken, run_stoppable
from .tokens import TokenCounter
from .tool_loop import (
    DEFAULT_MAX_TOOL_ROUNDS,
    ROUND_SEPARATOR,
    Approver,
    ToolEvents,
    ToolLoop,
    Turn,
    run_calls,
    skip_calls,
    terminal_approver,
)
from .tools import Described, Tool, Toolbox, supports_strict

if TYPE_CHECKING:
    import numpy as np

    from .client import AnyClient, ChatClient
    from .embedding import EmbeddingCache
    from .map_items import MapResults

__all__ = ["REQUEST_PARAMS", "Chatbot", "PreparedRequest", "ResponseCache", "load_images", "warm_up"]

REPLAY_CHUNK = 64  # characters per write when replaying a cached answer


class ResponseCache(Protocol):
    """Replays identical requests (see store.py): ``request`` holds model, messages and params."""

    def lookup(self, request: dict[str, Any]) -> Reply | None: ...

    def save(self, request: dict[str, Any], reply: Reply) -> None: ...


@dataclass
class PreparedRequest:
    """Everything ``ask`` will send, decided before anything is sent.

    ``prompt_tokens`` is exact when ``counted``; otherwise it is an upper bound (UTF-8 bytes) that
    showed the prompt fits without loading a vocabulary, and ``count_now`` makes it exact.
    """

    model: str
    info: ModelInfo
    window: list[Message]
    question: Message
    params: dict[str, Any]
    prompt_tokens: int
    budget: int
    history: bool = True
    messages: list[dict[str, Any]] = field(default_factory=list)
    counter: TokenCounter | None = field(default=None, repr=False)
    counted: bool = True
    tools: Toolbox | None = field(default=None, repr=False)  # the tools offered (their specs: params["tools"])
    route: Route | None = field(default=None, repr=False)  # the client, and the model name it is sent
    trimmed_turns: int = 0  # turns of the history left out to fit the budget
    fit: str = ""  # what the budget is, as the trimming notice names it ("the 8,192-token window")
    _counting: threading.Thread | None = field(default=None, repr=False)

    def as_request(self) -> dict[str, Any]:
        """The request as sent (model, messages, params): the response-cache key; no key inside."""
        return {"model": self.model, "messages": self.messages, "params": self.params}

    def count_later(self) -> None:
        """Start the exact count in the background (off the path to the first text)."""
        if not self.counted and self._counting is None:
            self._counting = threading.Thread(target=self._count, name="llmchat-count", daemon=True)
            self._counting.start()

    def count_now(self) -> None:
        """Make ``prompt_tokens`` and the question's count exact (waits for ``count_later``)."""
        if self._counting is not None:
            self._counting.join()
        if not self.counted:
            self._count()

    def _count(self) -> None:
        counter = self.counter
        if self.counted or counter is None:
            return
        # The question and the system message were bounded; the history was counted exactly.
        exact = [message.with_tokens(counter.count_message(message.role, message.text, name=message.name,
                                                           images=[i.size_triple() for i in message.images]))
                 if message is self.question or message.role == "system" else message
                 for message in self.window]
        self.window, self.question = exact, exact[-1]
        self.prompt_tokens = (counter.reply_priming + sum(message.tokens for message in exact)
                              + counter.count_tools(self.params.get("tools") or ()))
        self.counted = True

    def shown(self) -> dict[str, Any]:
        """What ``Reply.request`` keeps of the request: model, params (tools by name), the count."""
        params = {key: value for key, value in self.params.items() if key != "tools"}
        shown: dict[str, Any] = {"model": self.model, "params": params,
                                 "prompt_tokens_counted": self.prompt_tokens if self.counted else None}
        if self.tools:
            shown["tools"] = self.tools.names
        if self.route is not None and self.route.provider is not None:
            shown["provider"] = self.route.provider.name
        if self.trimmed_turns:
            shown["fit"] = self.fit  # what the turns were left out to fit, for the footer's notice
        return shown


class Chatbot:
    """A conversation with an LLM over any OpenAI-compatible endpoint.

    ``max_tokens`` caps each answer and is reserved out of the context window when trimming
    (unset: ``models.answer_reserve`` is kept: 4,096 tokens, less for a model with a smaller
    output limit or a small window, and nothing is sent). ``prompt_token_limit`` caps prompt tokens
    further, to save cost. ``context_window`` overrides the model table (local models).

    ``client``: a ChatClient, or a ready ``openai.OpenAI`` / ``AzureOpenAI`` to use as it is (its
    own ``max_retries`` then rules; see ChatClient). Without one, a client is built from
    ``api_key``, ``base_url``, the Azure settings, ``max_retries`` (default 3) and ``timeout``.
    ``first_byte_timeout`` (default 60 s) is how long an answer may take to begin.

    ``stop()`` ends every answer in flight within a moment, from any thread.

    ``tools``: functions (or Tools) the model may call with every question; ``@bot.tool`` adds one.
    ``max_tool_rounds`` (default 8) caps the rounds of calls one answer may take; ``approve`` is
    asked before each call of a ``confirm=True`` tool (see ``tool_loop``).

    ``max_cost_per_question`` (USD, default None: off): a question whose worst case (its prompt and
    the longest answer allowed, see ``estimate``) could cost more is refused before anything is sent.
    """

    def __init__(self, model: str = "gpt-4o-mini", *, system: str | None = None,
                 max_history: int | None = None, max_tokens: int | None = None,
                 prompt_token_limit: int | None = None, context_window: int | None = None,
                 api_key: str | None = None, base_url: str | None = None,
                 client: AnyClient | None = None, azure_endpoint: str | None = None,
                 api_version: str | None = None, azure_deployment: str | None = None,
                 max_retries: int | None = None, timeout: float | None = None,
                 first_byte_timeout: float | None = None, cache: ResponseCache | None = None,
                 tools: Any = None, max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
                 approve: Approver | None = None, vision: bool | None = None,
                 max_cost_per_question: float | None = None, **params: Any) -> None:
        check_params({**params, "max_tokens": max_tokens})
        check_whole("max_tool_rounds", max_tool_rounds, 1)
        for name, value in (("max_history", max_history), ("prompt_token_limit", prompt_token_limit),
                            ("context_window", context_window)):
            check_whole(name, value, 1)
        self.routes = Routes()  # clients of the providers named by prefixed models ("groq:...")
        self.vision = vision  # True/False: the model takes images or not, whatever else says
        self.client: ChatClient = home_client(
            model, client, api_key=api_key, base_url=base_url, azure_endpoint=azure_endpoint,
            api_version=api_version, azure_deployment=azure_deployment, max_retries=max_retries,
            timeout=timeout, first_byte_timeout=first_byte_timeout)
        self._model = model
        self.context_window = context_window
        self.prompt_token_limit = prompt_token_limit
        self.params: dict[str, Any] = {k: v for k, v in params.items() if v is not None}
        if max_tokens is not None:
            self.params["max_tokens"] = max_tokens
        self.cache = cache
        self.max_cost_per_question = max_cost_per_question
        self.tools = Toolbox.of(tools)  # offered with every question (ask(tools=...) adds more)
        # Tools made from the functions ask(tools=...) was given, so asking again does not describe them again.
        self._made_tools: weakref.WeakKeyDictionary[Any, Described] = weakref.WeakKeyDictionary()
        self.max_tool_rounds = max_tool_rounds
        self.approve = approve  # asks consent for confirm=True tools (see tool_loop); None: the default
        # Vectors embed() paid for: the store's table once a store is attached, else memory (made on first use).
        self.embedding_cache: EmbeddingCache | None = None
        # Called with every finished Reply (after it is recorded, before the sink finishes): the
        # usage ledger and the panel's status line listen here.
        self.reply_listeners: list[Callable[[Reply], None]] = []
        # Batch API jobs of map(mode="batch"): this process's, or the store's once it records this bot.
        self.batch_jobs: BatchJobStore = MemoryBatchJobs()
        # Where map() keeps answered rows to resume from (mapping.RowStore): a Store recording this bot sets it.
        self.row_store: Any = None
        self.conversation = Conversation(TokenCounter(self.info), system=system, max_history=max_history)
        self._asks: set[StopToken] = set()  # one per answer in flight
        self._lock = threading.RLock()  # the conversation: read by prepare (in a helper thread), written by _record

    # -- settings ------------------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self._model

    @model.setter
    def model(self, name: str) -> None:
        old = self.info
        self._model = name
        if _counts_differ(old, self.info):
            self.conversation.recount(TokenCounter(self.info))

    @property
    def info(self) -> ModelInfo:
        return self.routes.info(self._model, self.client, context_window=self.context_window, vision=self.vision)

    @property
    def system(self) -> str | None:
        return self.conversation.system

    @system.setter
    def system(self, text: str | None) -> None:
        self.conversation.system = text

    @property
    def max_tokens(self) -> int | None:
        return self.params.get("max_tokens")

    @property
    def max_cost_per_question(self) -> float | None:
        """USD a question may cost at worst (prompt and longest answer); None: no limit."""
        return self._max_cost

    @max_cost_per_question.setter
    def max_cost_per_question(self, usd: float | None) -> None:
        if usd is not None and (isinstance(usd, bool) or not isinstance(usd, (int, float)) or not usd > 0
                                or usd == float("inf")):
            raise errors.ConfigurationError(
                f"max_cost_per_question must be a number of dollars > 0 (or None for no limit), got {usd!r}")
        self._max_cost = usd

    @property
    def history(self) -> list[Message]:
        return list(self.conversation.messages)

    @property
    def busy(self) -> bool:
        """True while an answer is in flight (from the first line of ``ask`` to its return)."""
        return bool(self._asks)

    def budget(self, info: ModelInfo | None = None, max_tokens: int | None = None) -> int:
        """Most prompt tokens a request may use: window minus the answer's reserve, under the cap."""
        info = info or self.info
        budget = info.context_window - answer_reserve(info, max_tokens)
        if self.prompt_token_limit is not None:
            budget = min(budget, self.prompt_token_limit)
        return budget

    def tool(self, function: Callable[..., Any] | None = None, *, name: str | None = None,
             description: str | None = None, confirm: bool = False, max_result_chars: int | None = None) -> Any:
        """Offer ``function`` to the model with every question: ``@bot.tool`` or ``@bot.tool(confirm=True)``.
        The function is returned as it was (still a plain function)."""

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            self.tools.add(Tool(function, name=name, description=description, confirm=confirm,
                                max_result_chars=max_result_chars))
            return function

        return register if function is None else register(function)

    def reset(self) -> None:
        """Forget the conversation; the system message stays."""
        self.conversation.clear()

    def stop(self) -> None:
        """End every answer in flight now, from any thread: each ``ask`` returns within a moment,
        keeping the partial text, marked (an answer with no text yet leaves the history as it was)."""
        for token in list(self._asks):
            token.stop()

    def map(self, items: Any, template: str | None = None, *, schema: Any = None, concurrency: int = 8,
            mode: str = "concurrent", store: Any = None, resume: bool = True, retries: int = 5,
            progress: bool = True, dry_run: bool = False, **overrides: Any) -> Any:
        """Ask one question per item (strings, dicts, a pandas Series or DataFrame; ``template`` fills
        ``{field}`` from each), each on its own (no history; the system message and parameters apply),
        ``concurrency`` at a time: the answers in input order, a list, or for a DataFrame a DataFrame
        with the schema's fields, ``error`` and ``cost``. Rows answered before are not asked again
        (``store``); Ctrl-C or ``stop()`` returns what is done. ``dry_run=True``: ``estimate_map``'s
        answer instead. ``mode="batch"``: the provider's Batch API. See ``mapping``."""
        from .mapping import map_items

        token = StopToken()
        self._asks.add(token)
        try:
            return map_items(self, items, template, schema=schema, concurrency=concurrency, mode=mode,
                             store=store, resume=resume, retries=retries, progress=progress, dry_run=dry_run,
                             stop=token, notify=self._notify, **overrides)
        finally:
            self._asks.discard(token)

    def estimate_map(self, items: Any, template: str | None = None, *, schema: Any = None, store: Any = None,
                     **overrides: Any) -> Any:
        """What ``map`` with the same arguments would send and cost, before anything is sent: the
        rows still to ask, their exact prompt tokens, and the cost from empty answers to answers
        all ``max_tokens`` long (a ``mapping.MapEstimate``)."""
        from .mapping import estimate_items

        return estimate_items(self, items, template, schema=schema, store=store, **overrides)

    def embed(self, items: Any, model: str = "text-embedding-3-small", *, dimensions: int | None = None,
              column: str | None = None, batch_size: int | None = None, concurrency: int = 4,
              progress: bool | None = None) -> np.ndarray:
        """Vectors of ``items`` (a string, strings, a pandas Series, or a DataFrame's ``column``) as one
        float32 array in input order: batched, ``concurrency`` requests at a time, a text already
        embedded (same model and ``dimensions``) never sent again, cost in the ledger. See ``embedding``."""
        from .embedding import embed  # numpy loads only when used

        return embed(self, items, model=model, dimensions=dimensions, column=column, batch_size=batch_size,
                     concurrency=concurrency, progress=progress)

    def map_results(self, job_id: str, *, schema: Any = None, wait: bool = True, **options: Any) -> MapResults:
        """The answers of a Batch API job of ``map(mode="batch")`` in input order, as ``map`` returns
        them (``.rows``: each RowResult): this kernel's job, or an earlier one's kept in the store
        (``%chat batches`` lists them); its id or one of its provider batch ids. Waits, with the
        progress bar, until every row is answered (``wait=False``: looks once); KeyboardInterrupt
        stops the wait, not the job. ``schema`` parses the answers as ``map`` does. ``options``:
        ``progress``, ``poll``, ``resubmit`` (see ``batch``)."""
        from .batch import collect_job

        return collect_job(self.client, self.batch_jobs, job_id, wait=wait, schema=schema, notify=self._notify,
                           **options)

    def __repr__(self) -> str:
        return (f"Chatbot(model={self._model!r}, messages={len(self.conversation)}, "
                f"client={self.client!r})")

    # -- asking --------------------------------------------------------------------------------
    def prepare(self, question: str, *, images: Sequence[Any] = (), history: bool = True,
                tools: Toolbox | None = None, **overrides: Any) -> PreparedRequest:
        """Build the prompt window and parameters; raises before anything is sent if it cannot fit."""
        if not isinstance(question, str):
            raise errors.ConfigurationError(f"the question must be text, got {type(question).__name__}")
        model = overrides.pop("model", None) or self._model
        system = overrides.pop("system", True)
        check_params(overrides)
        params = {**self.params, **{k: v for k, v in overrides.items() if v is not None}}
        route = self.routes.route(model, self.client, context_window=self.context_window, vision=self.vision)
        info = route.info  # a local server was asked about the model (once per client)
        refs = load_images(images, model=info)
        max_tokens = params.get("max_tokens")
        budget = self.budget(info, max_tokens)
        if tools:
            params["tools"] = tools.specs(strict=supports_strict(info))
        with self._lock:
            conversation = self.conversation
            if model == self._model and _counts_differ(conversation.counter.info, info):
                conversation.recount(TokenCounter(info))  # its server told us how it counts
            if _counts_differ(conversation.counter.info, info):  # a one-off model that counts differently
                conversation = Conversation(TokenCounter(info), system=self.system)
                conversation.messages.extend(self.conversation.messages)
                conversation.recount(conversation.counter)
            fixes = self._fixes(info, max_tokens, budget)
            window = _window_by_bounds(conversation, question, refs, system, budget, history,
                                       conversation.counter.bound_tools(params.get("tools") or ()))
            counted = window is None
            reserved = conversation.counter.count_tools(params.get("tools") or ()) if counted else 0
            if window is None:
                question_message = conversation.make("user", question, images=refs)
                system_message = conversation.make("system", system) if isinstance(system, str) and system else (
                    system if system is True else None)
                window = conversation.window(question_message, budget, history=history, system=system_message,
                                             fixes=fixes, reserved=reserved)
            trimmed = _user_turns(conversation.messages) - _user_turns(window[:-1]) if history else 0
        if info.reasoning and "max_tokens" in params:
            params["max_completion_tokens"] = params.pop("max_tokens")
        tools_tokens = reserved if counted else conversation.counter.bound_tools(params.get("tools") or ())
        request = PreparedRequest(model, info, window, window[-1], params,
                                  conversation.prompt_tokens(window) + tools_tokens, budget, history,
                                  counter=conversation.counter, counted=counted, tools=tools or None,
                                  route=route, trimmed_turns=trimmed,
                                  fit=fit_target(info, budget, self.prompt_token_limit))
        request.messages = [message.to_api() for message in window]
        return request

    def _fixes(self, info: ModelInfo, max_tokens: int | None, budget: int) -> Callable[[int], str]:
        """What would let a question of ``needed`` prompt tokens fit: only what would help."""
        window, limit = info.context_window, self.prompt_token_limit

        def fixes(needed: int) -> str:
            said = ["shorten it"]
            if limit is not None and budget == limit and needed <= window - answer_reserve(info, max_tokens):
                said.append(f"raise prompt_token_limit (now {limit:,})")
            elif needed < window:
                now = f"max_tokens is {max_tokens:,}" if max_tokens is not None else (
                    f"{answer_reserve(info):,} are kept for the answer")
                said.append(f"set max_tokens={window - needed} or less to keep less of the {window:,}-token "
                            f"window for the answer ({now})")
            elif not info.known or self.context_window is not None:
                said.append(f"set context_window= if the model's real window is larger than {window:,}")
            return ", or ".join(said)

        return fixes

    def ask(self, question: str, *, images: Sequence[Any] = (), sink: ReplySink | None = None,
            history: bool = True, tools: Any = None, approve: Approver | None = None, observer: Any = None,
            max_tool_rounds: int | None = None, schema: Any = None, **overrides: Any) -> Reply:
        """Ask ``question``; stream the answer to ``sink`` and return the Reply.

        Without a ``sink`` (``default_sink``): in a Jupyter notebook kernel, live Markdown in the
        cell, as ``%%chat`` shows it; anywhere else plain text on stdout (``PrintSink``: flushed on
        the repaint policy, a partial answer's notice on a line of its own). ``overrides``: the
        ``model``, the ``system`` message (a string, or False for none) and API parameters
        (``temperature``, ``max_tokens``, ...) for this question only, checked before anything is sent.

        With ``history=False`` the question is sent without the earlier turns and is not added to
        them (the system message still applies). Once ``sink.start`` is called, ``sink.finish``
        follows exactly once, whatever happens. ``stop()`` or KeyboardInterrupt end it at any moment
        without raising: the Reply says "interrupted". A failed request raises its ChatError once
        the sink is finished. An answer that ended early (stopped or failed) keeps the text that had
        arrived in the history, marked; one with no text yet leaves the history as it was. A cached
        answer (``cache=``) is replayed through the sink the same way, with nothing sent.

        ``tools``: functions (or Tools, or a named set such as "notebook") the model may call for
        this question, besides the bot's. ``approve`` asks consent for ``confirm=True`` tools
        (default: the sink's or the observer's ``approve_tool``, the bot's ``approve``, else a
        terminal prompt, which declines where there is no terminal); ``observer`` is told of each
        call (as is the sink, if it has the methods); ``max_tool_rounds`` overrides the bot's. See
        ``tool_loop``.

        ``schema`` (a pydantic model, dataclass, TypedDict or JSON Schema dict): the answer comes
        back validated in ``Reply.parsed``, after one repair round if needed; an answer that yields
        no valid object raises StructuredAnswerError. See ``structured_ask``.
        """
        if schema is not None:
            from .structured_ask import ask_structured  # pydantic and jsonschema load only when used

            return ask_structured(self, question, schema, images=images, sink=sink, history=history, tools=tools,
                                  approve=approve, observer=observer, max_tool_rounds=max_tool_rounds, **overrides)
        token = StopToken()
        self._asks.add(token)  # first: a stop that comes now is never lost
        try:
            sink = sink if sink is not None else default_sink()
            given = Toolbox.of(tools, made=self._made_tools) if tools is not None else None
            toolbox = self.tools.merged(given) if given is not None else self.tools
            rounds = self.max_tool_rounds if max_tool_rounds is None else max_tool_rounds
            check_whole("max_tool_rounds", rounds, 1)
            try:
                request = run_stoppable(
                    lambda: self._guard(self.prepare(question, images=images, history=history, tools=toolbox,
                                                     **overrides)),
                    token, name="llmchat-prepare")
            except (Stopped, KeyboardInterrupt):
                token.stop()
                return self._stopped_before_sending(overrides.get("model") or self._model, sink)
            events = ToolEvents(sink, observer)
            loop = ToolLoop(toolbox, approve or events.approver() or self.approve or terminal_approver, events,
                            rounds)
            return self._deliver(request, sink, token, loop)
        finally:
            self._asks.discard(token)

    def estimate(self, question: str, *, images: Sequence[Any] = (), history: bool = True, tools: Any = None,
                 **overrides: Any) -> QuestionEstimate:
        """What ``ask`` with the same arguments would send and may cost, with nothing sent: the exact
        prompt tokens, the turns of the history sent and left out to fit, and the cost from an empty
        answer to the longest allowed (``max_tokens``, else the model's output limit). See ``estimate``."""
        given = Toolbox.of(tools, made=self._made_tools) if tools is not None else None
        toolbox = self.tools.merged(given) if given is not None else self.tools
        request = self.prepare(question, images=images, history=history, tools=toolbox, **overrides)
        request.count_now()
        return self._estimate_of(request)

    def _estimate_of(self, request: PreparedRequest) -> QuestionEstimate:
        params = request.params
        return question_estimate(model=request.model, info=request.info, window=request.window,
                                 prompt_tokens=request.prompt_tokens, trimmed_turns=request.trimmed_turns,
                                 budget=request.budget, fit=request.fit,
                                 max_tokens=params.get("max_tokens", params.get("max_completion_tokens")),
                                 limit=self.max_cost_per_question)

    def _guard(self, request: PreparedRequest) -> PreparedRequest:
        """The cost guard: refuse (CostLimitError) a request whose worst case is over the limit. A prompt
        bounded by its bytes that looks over is counted exactly before it is refused."""
        if self.max_cost_per_question is not None:
            estimate = self._estimate_of(request)
            if estimate.over_limit and not request.counted:
                request.count_now()
                estimate = self._estimate_of(request)
            check_cost(estimate)
        return request

    def _stopped_before_sending(self, model: str, sink: ReplySink) -> Reply:
        """The Reply of an answer stopped while its request was being prepared: nothing was sent."""
        reply = Reply(text="", model=model, status="interrupted", request={"model": model})
        try:
            sink.start(model)
        finally:
            try:
                self._notify(reply)
            finally:
                sink.finish(reply)
        return reply

    def _deliver(self, request: PreparedRequest, sink: ReplySink, token: StopToken, loop: ToolLoop) -> Reply:
        """Stream the answer into ``sink``, round after round while the model calls tools; then, on
        every path (the endpoint failed, the user interrupted, the sink or our own code raised),
        record the turn, tell the listeners and finish the sink. ChatErrors and bugs are raised
        again afterwards; an interrupt is not."""
        turn = Turn(request.counter, request.model)
        status: ReplyStatus = "failed"
        error: str | None = None
        started = time.perf_counter()
        current: _Round | None = None
        final = True  # the last round answers (False: it asked for calls, kept with their results)
        try:
            sink.start(request.model)
            while True:
                current = self._open_round(request, turn)
                final = True
                status = self._stream_round(current, sink, token, turn, request, started)
                self._end_round(request, turn, current, status)
                asked = current.source.result.tool_calls
                if status != "complete" or not asked:
                    break
                if not loop.toolbox:
                    status, error = "tool_calls", "the model asked for tools but none were given for this question"
                    turn.note_unrun(asked, "no tools were given for this question")
                    break
                turn.add_asking(current.text, asked, model=current.source.result.model, usage=current.usage)
                final = False
                if turn.rounds > loop.max_rounds:
                    skip_calls(turn, asked, f"the limit of {loop.max_rounds} tool rounds (max_tool_rounds) was reached",
                               loop.events)
                    status, error = "tool_calls", (f"stopped after {loop.max_rounds} rounds of tool calls "
                                                   f"(max_tool_rounds={loop.max_rounds}); the model asked for more")
                    break
                run_calls(loop, turn, asked, token)
                if token.stopped:
                    status = "interrupted"
                    break
                self._fit_round(request, turn)
                loop.events.round_started(turn.rounds + 1)
        except KeyboardInterrupt:
            status = "interrupted"
        except errors.ChatError as failure:
            status, error = "failed", str(failure)
            raise
        except Exception as bug:  # the sink's or ours, not the endpoint's: raised again as it is
            status, error = "failed", self.client.scrub(errors.one_line(f"{type(bug).__name__}: {bug}"))
            raise
        finally:
            if current is not None:
                token.forget(current.source.close)
                current.source.close()
                if not current.ended:
                    self._end_round(request, turn, current, status)
            reply = self._reply(request, turn, current, status, error, started)
            try:
                answer = None
                if final and current is not None:
                    answer = turn.answer(current.text, reply.status, model=reply.model, usage=current.usage)
                with self._lock:
                    self._record(request, reply, turn, answer)
                self._notify(reply)
                cache = self.cache
                if cache is not None:
                    for sent, answered in turn.to_cache:
                        cache.save(sent, answered)  # each round's answer, for this exact request
            finally:
                sink.finish(reply)
        return reply

    def _open_round(self, request: PreparedRequest, turn: Turn) -> _Round:
        """The next round's source: the cached answer to this exact request, or a new stream."""
        messages = request.messages + turn.api_messages() if turn.messages else request.messages
        sent = {"model": request.model, "messages": messages, "params": request.params}
        cached = self.cache.lookup(sent) if self.cache is not None else None
        client, sent_model = ((request.route.client, request.route.model) if request.route is not None
                              else (self.client, request.model))
        source = _Replay(cached) if cached is not None else client.stream(sent_model, messages, request.params)
        return _Round(source, sent, turn.tokens)

    def _stream_round(self, current: _Round, sink: ReplySink, token: StopToken, turn: Turn,
                      request: PreparedRequest, started: float) -> ReplyStatus:
        """Stream one round's text into ``sink``; how the round ended."""
        source = current.source
        token.on_stop(source.close)  # a stop that came already closes it at once
        write = sink.write
        for delta in source:
            if not current.parts:
                if turn.wrote:  # the text of an earlier round is above: a blank line between them
                    write(ROUND_SEPARATOR)
                    turn.text_parts.append(ROUND_SEPARATOR)
                if turn.first_text is None:
                    turn.first_text = time.perf_counter() - started
                    request.count_later()  # the exact prompt count, now that the first text is out
                turn.wrote = True
            current.parts.append(delta)
            turn.text_parts.append(delta)
            write(delta)
        token.forget(source.close)
        return _final_status(source)

    def _end_round(self, request: PreparedRequest, turn: Turn, current: _Round, status: ReplyStatus) -> None:
        """Add the round's usage and cost to the turn; its answer goes to the response cache later."""
        current.ended = True
        source, result = current.source, current.source.result
        from_cache = isinstance(source, _Replay)
        usage = result.usage
        asked = result.tool_calls
        if usage is None and (current.parts or asked) and not from_cache and request.counter is not None:
            # The endpoint reported no usage: our own exact counts, marked as ours.
            request.count_now()
            completion = request.counter.count_text(current.text) + request.counter.count_calls(asked)
            usage = Usage(request.prompt_tokens + current.prior_tokens, completion, 0, source="counted")
        current.usage = usage
        cost = 0.0 if from_cache else (
            request.info.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) if usage else None)
        turn.add_round(usage, cost, from_cache=from_cache, result=result)
        if self.cache is not None and not from_cache and status in ("complete", "truncated", "filtered"):
            turn.to_cache.append((current.sent, Reply(
                text=current.text, model=result.model or request.model, status=status,
                finish_reason=result.finish_reason, usage=usage, logprobs=result.logprobs,
                refusal=result.refusal, calls=[ToolCall(*call) for call in asked])))

    def _fit_round(self, request: PreparedRequest, turn: Turn) -> None:
        """Make the next round fit the budget: the oldest turns of the history go first; the
        question and this answer's rounds cannot, so if they alone do not fit, it is an error."""
        request.count_now()
        over = request.prompt_tokens + turn.tokens - request.budget
        if over <= 0:
            return
        window = drop_oldest_turns(request.window, over)
        if window is None:
            raise errors.PromptTooLongError(
                f"the tool results of this question bring the prompt to {request.prompt_tokens + turn.tokens:,} "
                f"tokens, over the budget of {request.budget:,}: lower the tools' max_result_chars, or ask for less "
                "at a time", needed=request.prompt_tokens + turn.tokens, budget=request.budget)
        freed = sum(message.tokens for message in request.window) - sum(message.tokens for message in window)
        request.trimmed_turns += _user_turns(request.window) - _user_turns(window)
        request.window = window
        request.messages = [message.to_api() for message in window]
        request.prompt_tokens -= freed

    def _reply(self, request: PreparedRequest, turn: Turn, current: _Round | None, status: ReplyStatus,
               error: str | None, started: float) -> Reply:
        result = current.source.result if current is not None else StreamResult()
        from_cache = turn.rounds > 0 and turn.cached_rounds == turn.rounds
        logprobs = turn.logprobs if turn.logprobs is not None else result.logprobs
        return Reply(text=turn.text, model=result.model or request.model, status=status,
                     finish_reason=result.finish_reason, usage=turn.usage, cost=turn.cost,
                     time_to_first_token=turn.first_text, total_time=time.perf_counter() - started,
                     logprobs=logprobs, error=error, from_cache=from_cache, refusal=result.refusal,
                     request=request.shown(), calls=list(turn.calls), rounds=max(turn.rounds, 1),
                     trimmed_turns=request.trimmed_turns, system_fingerprint=result.system_fingerprint,
                     seed=request.params.get("seed"))

    def _notify(self, reply: Reply) -> None:
        for listener in list(self.reply_listeners):
            listener(reply)

    def _record(self, request: PreparedRequest, reply: Reply, turn: Turn, answer: Message | None) -> None:
        """Add the turn to the history: the question, every round's messages (tool calls and their
        results), and the answer; whole answers always, partial ones only if something arrived."""
        if answer is not None and answer.partial and not answer.text:
            answer = None  # an answer stopped or failed before its text: nothing of it to keep
        messages = turn.messages + ([answer] if answer is not None else [])
        if not request.history or not messages:
            return
        request.count_now()
        conversation = self.conversation
        question = request.question
        if _counts_differ(self.info, request.info):  # counted for a one-off model: count as this bot counts
            question = conversation.make("user", question.text, images=question.images)
            messages = [message.with_tokens(count_message(conversation.counter, message)) for message in messages]
        conversation.append(question)
        conversation.append_turn(messages)


@dataclass
class _Round:
    """One request of an answer: its source (a stream or a cached answer), what was sent, the
    tokens the earlier rounds' messages added to its prompt, and what it wrote."""

    source: ChatStream | _Replay
    sent: dict[str, Any]
    prior_tokens: int
    parts: list[str] = field(default_factory=list)
    usage: Usage | None = None
    ended: bool = False

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _window_by_bounds(conversation: Conversation, question: str, refs: list[ImageRef], system: Any,
                      budget: int, history: bool, reserved: int = 0) -> list[Message] | None:
    """The window without loading a vocabulary, when the question and system message bounded by
    their bytes plus every turn of the history (and ``reserved``: the tool definitions' bound) fit
    the budget (nothing to trim: exact counts would keep the same window). None when the
    vocabulary is loaded already, or when it may not fit."""
    if conversation.counter.ready:
        return None
    draft = conversation.draft("user", question, images=refs)
    if isinstance(system, str):
        system_message = conversation.draft("system", system) if system else None
    else:
        system_message = conversation.system_draft() if system is True else None
    needed = (conversation.counter.reply_priming + draft.tokens + (system_message.tokens if system_message else 0)
              + reserved)
    if history:
        needed += sum(message.tokens for turn in conversation.turns() for message in turn)
    if needed > budget:
        return None
    return conversation.window(draft, budget, history=history, system=system_message, reserved=reserved)


def warm_up(model: str) -> None:
    """Do the slow first-use work now (import the SDK, load ``model``'s token vocabulary), so a
    first question asked later does not wait for it."""
    import_sdk()
    TokenCounter(model_info(model)).count_text("")


class _Replay:
    """A cached Reply played back like a stream, so it takes the same path to the sink: no HTTP."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.result = StreamResult(model=reply.model, finish_reason=reply.finish_reason, usage=reply.usage,
                                   logprobs=reply.logprobs, refusal=reply.refusal,
                                   system_fingerprint=reply.system_fingerprint)
        for index, call in enumerate(reply.calls):  # the calls the cached round asked for
            self.result.add_call_delta(index, call.id, call.name, call.arguments)
        self._closed = False
        self._done = False

    @property
    def stopped(self) -> bool:
        return self._closed and not self._done

    def close(self) -> None:
        self._closed = True

    def __iter__(self) -> Iterator[str]:
        text = self.reply.text
        for offset in range(0, len(text), REPLAY_CHUNK):
            if self._closed:
                return
            yield text[offset:offset + REPLAY_CHUNK]
        self._done = True


def _final_status(source: ChatStream | _Replay) -> ReplyStatus:
    """How an answer that ended without an exception ended."""
    if source.stopped:
        return "interrupted"
    if isinstance(source, _Replay):
        return source.reply.status
    return STATUS_BY_FINISH.get(source.result.finish_reason, "complete")


def load_images(sources: Any, *, model: ModelInfo) -> list[ImageRef]:
    """ImageRefs for ``sources`` (paths, URLs, bytes, PIL images, figures); see images.py."""
    # One source alone or a list; ImageRefs too (a saved ref is checked like any source).
    from .images import prepare_images  # Pillow is imported there only when pixels are decoded

    return prepare_images(sources, model=model)


def _user_turns(messages: Iterable[Message]) -> int:
    """The turns among ``messages``: each starts with a user message."""
    return sum(1 for message in messages if message.role == "user")


def _counts_differ(a: ModelInfo, b: ModelInfo) -> bool:
    return (a.encoding != b.encoding or a.image_tokens != b.image_tokens or a.template != b.template
            or a.text_margin != b.text_margin or a.counted_by != b.counted_by)
