"""Chatbot: a conversation plus a client. ``ask`` builds the prompt window, streams the answer
to a sink, and records the turn only once the stream has ended. No IPython, no HTTP here."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from . import errors
from .client import ChatStream, StreamResult, chat_client, import_sdk
from .conversation import Conversation
from .messages import ImageRef, Message
from .models import DEFAULT_ANSWER_RESERVE, ModelInfo, model_info
from .reply import PrintSink, Reply, ReplySink, ReplyStatus
from .tokens import TokenCounter

if TYPE_CHECKING:
    from .client import AnyClient, ChatClient

# Request parameters people tune; any of them can be set on the Chatbot or for one question.
REQUEST_PARAMS = ("temperature", "top_p", "frequency_penalty", "presence_penalty", "seed", "stop",
                  "response_format", "logprobs", "top_logprobs", "max_tokens", "extra_body")
STATUS_BY_FINISH: dict[str | None, ReplyStatus] = {"length": "truncated", "content_filter": "filtered"}
REPLAY_CHUNK = 64  # characters per write when replaying a cached answer


class ResponseCache(Protocol):
    """Replays identical requests (see store.py): ``request`` holds model, messages and params."""

    def lookup(self, request: dict[str, Any]) -> Reply | None: ...

    def save(self, request: dict[str, Any], reply: Reply) -> None: ...


@dataclass
class PreparedRequest:
    """Everything ``ask`` will send, decided before anything is sent."""

    model: str
    info: ModelInfo
    window: list[Message]
    question: Message
    params: dict[str, Any]
    prompt_tokens: int
    budget: int
    history: bool = True
    messages: list[dict[str, Any]] = field(default_factory=list)

    def as_request(self) -> dict[str, Any]:
        """The request as sent (model, messages, params): the response-cache key; no key inside."""
        return {"model": self.model, "messages": self.messages, "params": self.params}


class Chatbot:
    """A conversation with an LLM over any OpenAI-compatible endpoint.

    ``max_tokens`` caps each answer and is reserved out of the context window when trimming
    (unset: ``DEFAULT_ANSWER_RESERVE`` or the model's output limit, whichever is smaller, is
    reserved and nothing is sent). ``prompt_token_limit`` caps prompt tokens further, to save
    cost. ``context_window`` overrides the model table (local models).

    ``client``: a ChatClient, or a ready ``openai.OpenAI`` / ``AzureOpenAI`` to use as it is (its
    own ``max_retries`` then rules; see ChatClient). Without one, a client is built from
    ``api_key``, ``base_url``, the Azure settings, ``max_retries`` (default 3) and ``timeout``.
    """

    def __init__(self, model: str = "gpt-4o-mini", *, system: str | None = None,
                 max_history: int | None = None, max_tokens: int | None = None,
                 prompt_token_limit: int | None = None, context_window: int | None = None,
                 api_key: str | None = None, base_url: str | None = None,
                 client: AnyClient | None = None, azure_endpoint: str | None = None,
                 api_version: str | None = None, azure_deployment: str | None = None,
                 max_retries: int | None = None, timeout: float | None = None,
                 cache: ResponseCache | None = None, **params: Any) -> None:
        _check_params(params)
        self.client: ChatClient = chat_client(
            client, api_key=api_key, base_url=base_url, azure_endpoint=azure_endpoint,
            api_version=api_version, azure_deployment=azure_deployment, max_retries=max_retries,
            timeout=timeout)
        if max_history is not None and max_history < 1:
            raise errors.ConfigurationError(f"max_history must be at least 1, got {max_history}")
        self._model = model
        self.context_window = context_window
        self.prompt_token_limit = prompt_token_limit
        self.params: dict[str, Any] = {k: v for k, v in params.items() if v is not None}
        if max_tokens is not None:
            self.params["max_tokens"] = max_tokens
        self.cache = cache
        # Called with every finished Reply (after it is recorded, before the sink finishes): the
        # usage ledger and the panel's status line listen here.
        self.reply_listeners: list[Callable[[Reply], None]] = []
        self.conversation = Conversation(TokenCounter(self.info), system=system, max_history=max_history)
        self._active: ChatStream | _Replay | None = None
        self._stop = threading.Event()

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
        return model_info(self._model, context_window=self.context_window)

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
    def history(self) -> list[Message]:
        return list(self.conversation.messages)

    def budget(self, info: ModelInfo | None = None, max_tokens: int | None = None) -> int:
        """Most prompt tokens a request may use: window minus the answer's reserve, under the cap."""
        info = info or self.info
        reserve = max_tokens if max_tokens is not None else min(DEFAULT_ANSWER_RESERVE, info.max_output)
        budget = info.context_window - reserve
        if self.prompt_token_limit is not None:
            budget = min(budget, self.prompt_token_limit)
        return budget

    def reset(self) -> None:
        """Forget the conversation; the system message stays."""
        self.conversation.clear()

    def stop(self) -> None:
        """End the answer being streamed, from any thread; ``ask`` keeps the partial text, marked."""
        self._stop.set()
        active = self._active
        if active is not None:
            active.close()

    def __repr__(self) -> str:
        return (f"Chatbot(model={self._model!r}, messages={len(self.conversation)}, "
                f"client={self.client!r})")

    # -- asking --------------------------------------------------------------------------------
    def prepare(self, question: str, *, images: Sequence[Any] = (), history: bool = True,
                **overrides: Any) -> PreparedRequest:
        """Build the prompt window and parameters; raises before anything is sent if it cannot fit."""
        if not isinstance(question, str):
            raise errors.ConfigurationError(f"the question must be text, got {type(question).__name__}")
        model = overrides.pop("model", None) or self._model
        system = overrides.pop("system", True)
        _check_params(overrides)
        params = {**self.params, **{k: v for k, v in overrides.items() if v is not None}}
        info = model_info(model, context_window=self.context_window)
        conversation = self.conversation
        if _counts_differ(self.info, info):  # a one-off model that counts differently
            conversation = Conversation(TokenCounter(info), system=self.system)
            conversation.messages.extend(self.conversation.messages)
            conversation.recount(conversation.counter)
        refs = load_images(images, model=info)
        question_message = conversation.make("user", question, images=refs)
        system_message = conversation.make("system", system) if isinstance(system, str) and system else (
            system if system is True else None)
        budget = self.budget(info, params.get("max_tokens"))
        window = conversation.window(question_message, budget, history=history, system=system_message)
        if info.reasoning and "max_tokens" in params:
            params["max_completion_tokens"] = params.pop("max_tokens")
        request = PreparedRequest(model, info, window, question_message, params,
                                  conversation.prompt_tokens(window), budget, history)
        request.messages = [message.to_api() for message in window]
        return request

    def ask(self, question: str, *, images: Sequence[Any] = (), sink: ReplySink | None = None,
            history: bool = True, **overrides: Any) -> Reply:
        """Ask ``question``; stream the answer to ``sink`` (default: print it) and return the Reply.

        With ``history=False`` the question neither reads nor writes the conversation. Once
        ``sink.start`` is called, ``sink.finish`` follows exactly once, whatever happens.
        """
        request = self.prepare(question, images=images, history=history, **overrides)
        sink = sink if sink is not None else PrintSink()
        cached = self.cache.lookup(request.as_request()) if self.cache is not None else None
        if cached is not None:
            return self._deliver(request, _Replay(cached), sink)
        return self._deliver(request, self.client.stream(request.model, request.messages, request.params), sink)

    def _deliver(self, request: PreparedRequest, source: ChatStream | _Replay, sink: ReplySink) -> Reply:
        """Stream ``source`` into ``sink``; then, on every path (the endpoint failed, the user
        interrupted, the sink or our own code raised), record the turn, tell the listeners and
        finish the sink. ChatErrors and bugs are raised again afterwards; an interrupt is not."""
        self._stop.clear()
        self._active = source
        if self._stop.is_set():  # stop() came before the stream was active
            source.close()
        parts: list[str] = []
        status: ReplyStatus = "failed"
        error: str | None = None
        started = time.perf_counter()
        first: float | None = None
        try:
            sink.start(request.model)
            write = sink.write
            for delta in source:
                if first is None:
                    first = time.perf_counter() - started
                parts.append(delta)
                write(delta)
            status = _final_status(source)
        except KeyboardInterrupt:
            status = "interrupted"
        except errors.ChatError as failure:
            error = str(failure)
            raise
        except Exception as bug:  # the sink's or ours, not the endpoint's: raised again as it is
            error = self.client.scrub(errors.one_line(f"{type(bug).__name__}: {bug}"))
            raise
        finally:
            source.close()
            self._active = None
            reply = self._reply(request, source, "".join(parts), status, error, first, started)
            try:
                self._record(request, reply)
                self._notify(reply)
                if self.cache is not None and not reply.from_cache and status in ("complete", "truncated",
                                                                                  "filtered"):
                    self.cache.save(request.as_request(), reply)
            finally:
                sink.finish(reply)
        return reply

    def _reply(self, request: PreparedRequest, source: ChatStream | _Replay, text: str, status: ReplyStatus,
               error: str | None, first: float | None, started: float) -> Reply:
        result = source.result
        usage = result.usage
        from_cache = isinstance(source, _Replay)
        cost = 0.0 if from_cache else (
            request.info.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) if usage else None)
        return Reply(text=text, model=result.model or request.model, status=status,
                     finish_reason=result.finish_reason, usage=usage, cost=cost, time_to_first_token=first,
                     total_time=time.perf_counter() - started, logprobs=result.logprobs, error=error,
                     from_cache=from_cache,
                     request={"model": request.model, "params": request.params,
                              "prompt_tokens_counted": request.prompt_tokens})

    def _notify(self, reply: Reply) -> None:
        for listener in list(self.reply_listeners):
            listener(reply)

    def _record(self, request: PreparedRequest, reply: Reply) -> None:
        """Add the turn to the history: whole answers always, partial ones only if text arrived."""
        if not request.history or (reply.status in ("interrupted", "failed") and not reply.text):
            return
        conversation = self.conversation
        question = request.question
        if _counts_differ(self.info, request.info):
            question = conversation.make("user", question.text, images=question.images)
        answer = conversation.make("assistant", reply.text, status=reply.status, model=reply.model,
                                   usage=reply.usage)
        conversation.append(question)
        conversation.append(answer)


def warm_up(model: str) -> None:
    """Do the slow first-use work now (import the SDK, load ``model``'s token vocabulary), so a
    first question asked later does not wait for it."""
    import_sdk()
    TokenCounter(model_info(model))


class _Replay:
    """A cached Reply played back like a stream, so it takes the same path to the sink: no HTTP."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.result = StreamResult(model=reply.model, finish_reason=reply.finish_reason, usage=reply.usage,
                                   logprobs=reply.logprobs)
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


def _check_params(params: dict[str, Any]) -> None:
    unknown = sorted(set(params) - set(REQUEST_PARAMS))
    if unknown:
        raise errors.ConfigurationError(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"known: {', '.join(REQUEST_PARAMS)}")


def _counts_differ(a: ModelInfo, b: ModelInfo) -> bool:
    return a.encoding != b.encoding or a.image_tokens != b.image_tokens
