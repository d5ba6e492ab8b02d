"""What one question will send and may cost, with nothing sent (``Chatbot.estimate``, ``%%chat
--dry-run``), and the cost guard (``max_cost_per_question``) that refuses a question whose worst
case is over its limit.

The prompt is the one ``ask`` would send (``Chatbot.prepare``: the same window, the same turns left
out, counted exactly). An answer costs from nothing (no completion tokens) up to its longest:
``max_tokens`` when set, else the model's output limit within the room the window leaves (the
answer reserve only keeps room in the window; without ``max_tokens`` nothing stops the server
writing more). Prices are the model table's (``ModelInfo.cost``, long-context prices included), as
``Chatbot.estimate_map`` prices a map; a model with no known price has no cost range and is not
guarded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import CostLimitError
from .messages import Message
from .models import ModelInfo, format_cost

__all__ = ["QuestionEstimate", "check_cost", "completion_bound", "fit_target", "question_estimate", "raised_limit",
           "trimmed_notice"]


@dataclass(frozen=True)
class QuestionEstimate:
    """What a question would send and cost: exact prompt tokens, the turns of the history sent and
    left out, and the cost from an empty answer (``cost_low``) to the longest allowed (``cost_high``)."""

    model: str
    prompt_tokens: int
    turns_sent: int  # earlier turns of the history in the prompt
    trimmed_turns: int  # earlier turns left out to fit
    system: bool  # a system message is sent
    fit: str  # what the prompt must fit: "the 8,192-token window" or "prompt_token_limit=2,000"
    budget: int  # most prompt tokens allowed: the window less the answer's reserve, under prompt_token_limit
    max_completion: int  # the longest answer allowed, in tokens
    max_tokens_set: bool
    cost_low: float | None  # USD; None when the model's price is unknown
    cost_high: float | None
    limit: float | None = None  # max_cost_per_question

    @property
    def over_limit(self) -> bool:
        """True when ``max_cost_per_question`` would refuse the question."""
        return self.limit is not None and self.cost_high is not None and self.cost_high > self.limit

    def __str__(self) -> str:
        parts = [*(["the system message"] if self.system else []),
                 *([_turns(self.turns_sent)] if self.turns_sent else []), "the question"]
        prompt = f"prompt: {self.prompt_tokens:,} tokens ({_listed(parts)})"
        if self.trimmed_turns:
            prompt += f"; {trimmed_notice(self.trimmed_turns, self.fit)}"
        bound = "max_tokens" if self.max_tokens_set else "the model's output limit: set max_tokens= for a tighter bound"
        if self.cost_low is None or self.cost_high is None:
            cost = f"cost: unknown (no price for {self.model} in the model table)"
        else:
            cost = f"cost: {format_cost(self.cost_low)} to {format_cost(self.cost_high)}"
        lines = [f"{self.model} (nothing was sent)", prompt, f"answer: 0 to {self.max_completion:,} tokens ({bound})",
                 cost]
        if self.over_limit:
            lines.append(f"over max_cost_per_question={format_cost(self.limit)}: asking would be refused")
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))  # IPython shows the lines, as plain text


def completion_bound(info: ModelInfo, prompt_tokens: int, max_tokens: int | None) -> int:
    """The longest answer a request allows: ``max_tokens`` when set, else the model's output limit
    within what the window leaves after the prompt."""
    if max_tokens is not None:
        return max_tokens
    return max(0, min(info.max_output, info.context_window - prompt_tokens))


def fit_target(info: ModelInfo, budget: int, prompt_token_limit: int | None) -> str:
    """What a prompt of at most ``budget`` tokens was fit into, as the trimming notice names it."""
    if prompt_token_limit is not None and budget == prompt_token_limit:
        return f"prompt_token_limit={prompt_token_limit:,}"
    return f"the {info.context_window:,}-token window"


def trimmed_notice(turns: int, fit: str) -> str:
    """The one wording of turns left out: "3 earlier turns left out to fit the 8,192-token window"."""
    return f"{_turns(turns)} left out to fit {fit}"


def question_estimate(*, model: str, info: ModelInfo, window: Sequence[Message], prompt_tokens: int,
                      trimmed_turns: int, budget: int, fit: str, max_tokens: int | None,
                      limit: float | None) -> QuestionEstimate:
    """The estimate of a prepared request: ``window`` is what it sends (system, history turns, question)."""
    most = completion_bound(info, prompt_tokens, max_tokens)
    turns = sum(1 for message in window[:-1] if message.role == "user")
    return QuestionEstimate(
        model=model, prompt_tokens=prompt_tokens, turns_sent=turns, trimmed_turns=trimmed_turns,
        system=bool(window) and window[0].role == "system", fit=fit, budget=budget, max_completion=most,
        max_tokens_set=max_tokens is not None, cost_low=info.cost(prompt_tokens, 0),
        cost_high=info.cost(prompt_tokens, most), limit=limit)


def check_cost(estimate: QuestionEstimate) -> None:
    """Refuse (CostLimitError, one line) a question whose worst case is over ``max_cost_per_question``."""
    if not estimate.over_limit:
        return
    assert estimate.cost_high is not None and estimate.limit is not None
    figures = (f"this question could cost up to {format_cost(estimate.cost_high)} on {estimate.model} "
               f"({estimate.prompt_tokens:,} prompt tokens and an answer of up to {estimate.max_completion:,} "
               f"tokens), over max_cost_per_question={format_cost(estimate.limit)}")
    raise CostLimitError(
        f"{figures}: raise max_cost_per_question to {format_cost(raised_limit(estimate.cost_high))} or more, "
        "lower max_tokens, or send less history (reset(), or history=False); nothing was sent",
        figures=figures, cost=estimate.cost_high, limit=estimate.limit)


def raised_limit(cost: float) -> float:
    """A round limit a little above ``cost`` to suggest: two significant digits, rounded up."""
    if cost <= 0:
        return 0.01
    step = 10.0 ** (math.floor(math.log10(cost)) - 1)
    return round(math.floor(cost / step + 1) * step, 10)


def _turns(count: int) -> str:
    return f"{count:,} earlier turn{'s' if count != 1 else ''}"


def _listed(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
