"""Chatbot: a conversation plus a client. ``ask`` builds the prompt window, streams the answer
to a sink, and records the turn only once the stream has ended. No IPython here."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from . import errors
from .client import ChatClient, ChatStream
from .conversation import Conversation
from .messages import ImageRef, Message
from .models import DEFAULT_ANSWER_RESERVE, ModelInfo, model_info
from .reply import PrintSink, Reply, ReplySink, ReplyStatus
from .tokens import TokenCounter

if TYPE_CHECKING:
    import openai

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
    """

    def __init__(self, model: str = "gpt-4o-mini", *, system: str | None = None,
                 max_history: int | None = None, max_tokens: int | None = None,
                 prompt_token_limit: int | None = None, context_window: int | None = None,
                 api_key: str | None = None, base_url: str | None = None,
                 client: ChatClient | openai.OpenAI | None = None, azure_endpoint: str | None = None,
                 api_version: str | None = None, azure_deployment: str | None = None,
                 max_retries: int = 3, timeout: float = 600.0, cache: ResponseCache | None = None,
                 **params: Any) -> None:
        _check_params(params)
        if isinstance(client, ChatClient):
            self.client = client
        else:
            self.client = ChatClient(api_key=api_key, base_url=base_url, client=client,
                                     azure_endpoint=azure_endpoint, api_version=api_version,
                                     azure_deployment=azure_deployment, max_retries=max_retries,
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
        self._active: ChatStream | None = None
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

        With ``history=False`` the question neither reads nor writes the conversation.
        """
        request = self.prepare(question, images=images, history=history, **overrides)
        sink = sink if sink is not None else PrintSink()
        if self.cache is not None:
            cached = self.cache.lookup(request.as_request())
            if cached is not None:
                return self._replay(request, cached, sink)
        return self._stream(request, sink)

    def _stream(self, request: PreparedRequest, sink: ReplySink) -> Reply:
        self._stop.clear()
        stream = self.client.stream(request.model, request.messages, request.params)
        self._active = stream
        parts: list[str] = []
        status: ReplyStatus = "complete"
        failure: errors.ChatError | None = None
        started = time.perf_counter()
        first: float | None = None
        try:
            sink.start(request.model)
            if self._stop.is_set():
                raise KeyboardInterrupt
            write = sink.write
            for delta in stream:
                if first is None:
                    first = time.perf_counter() - started
                parts.append(delta)
                write(delta)
        except KeyboardInterrupt:
            stream.close()
            status = "interrupted"
        except Exception as error:
            stream.close()
            if self._stop.is_set():
                status = "interrupted"
            else:
                status = "failed"
                failure = self.client.map_error(error, model=request.model, retries=stream.result.retries,
                                                mid_stream=stream.got_text)
        finally:
            self._active = None
        total = time.perf_counter() - started
        result = stream.result
        if status == "complete":
            status = STATUS_BY_FINISH.get(result.finish_reason, "complete")
        usage = result.usage
        reply = Reply(
            text="".join(parts), model=result.model or request.model, status=status,
            finish_reason=result.finish_reason, usage=usage,
            cost=request.info.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
            if usage else None,
            time_to_first_token=first, total_time=total, logprobs=result.logprobs,
            error=str(failure) if failure else None,
            request={"model": request.model, "params": request.params,
                     "prompt_tokens_counted": request.prompt_tokens})
        self._record(request, reply)
        self._notify(reply)
        if failure is None and status in ("complete", "truncated", "filtered") and self.cache is not None:
            self.cache.save(request.as_request(), reply)
        sink.finish(reply)
        if failure is not None:
            raise failure
        return reply

    def _replay(self, request: PreparedRequest, cached: Reply, sink: ReplySink) -> Reply:
        """Stream a cached answer through the same sink, at once, and record the turn."""
        started = time.perf_counter()
        sink.start(request.model)
        text = cached.text
        for offset in range(0, len(text), REPLAY_CHUNK):
            sink.write(text[offset:offset + REPLAY_CHUNK])
        reply = Reply(text=text, model=cached.model, status=cached.status,
                      finish_reason=cached.finish_reason, usage=cached.usage, cost=0.0,
                      time_to_first_token=0.0, total_time=time.perf_counter() - started,
                      logprobs=cached.logprobs, from_cache=True,
                      request={"model": request.model, "params": request.params,
                               "prompt_tokens_counted": request.prompt_tokens})
        self._record(request, reply)
        self._notify(reply)
        sink.finish(reply)
        return reply

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
    import openai  # noqa: F401 - the import is the work

    TokenCounter(model_info(model))


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
