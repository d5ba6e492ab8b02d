"""Chat templates of local models: the tokens a server adds around the messages it is sent.

An OpenAI-compatible server turns ``messages`` into one prompt with the model's chat template
before counting it against its window: ChatML wraps each message in ``<|im_start|>role\\n ...
<|im_end|>\\n`` (5 tokens), Llama 3 in ``<|start_header_id|>role<|end_header_id|>\\n\\n ...
<|eot_id|>`` (5), and Llama 3.1+ adds a system block with a knowledge-cutoff date to every prompt
(~26 tokens). Counting only the text (and OpenAI's 3 per message) falls short of the server's
count; llama.cpp then rejects a prompt we thought fit (it counted 2,025 where we counted 1,995).

A ``ChatTemplate`` holds those overheads, counted generously, plus ``text_margin``: the share
added to text counts when the text is counted with one of our encodings rather than by the
server's own tokenizer (a 32k-token SentencePiece vocabulary, as Mistral 7B and Phi-3 use,
splits English into ~25% more tokens than cl100k_base). A template is recognised from the
template text a server reports (Ollama's /api/show, llama.cpp's /props) or from the model's name;
one not recognised gets ``UNKNOWN``, whose overheads and margin are a safety net.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ChatTemplate:
    """Tokens a chat template adds, as upper bounds measured with the template's own special tokens."""

    name: str
    per_message: int  # around each message, its role included
    per_prompt: int  # once per prompt: BOS, a system block the template always adds
    reply_priming: int  # the assistant header that opens the answer
    text_margin: float  # share added to text counted with our encoding instead of the model's tokenizer
    encoding: str = "cl100k_base"  # our closest encoding to the model's tokenizer

    @property
    def fixed(self) -> int:
        """Tokens every prompt carries besides its messages."""
        return self.per_prompt + self.reply_priming


TEMPLATES: dict[str, ChatTemplate] = {t.name: t for t in [
    # <|im_start|>role\n ... <|im_end|>\n ; answer opened by <|im_start|>assistant\n (Qwen, Phi-4, many fine-tunes)
    ChatTemplate("chatml", per_message=5, per_prompt=0, reply_priming=3, text_margin=0.05),
    # <|begin_of_text|> ; <|start_header_id|>role<|end_header_id|>\n\n ... <|eot_id|> (Llama 3's
    # tokenizer is cl100k_base's merges plus 28k more, so cl100k counts are an upper bound)
    ChatTemplate("llama3", per_message=5, per_prompt=1, reply_priming=4, text_margin=0.02),
    # Llama 3.1-3.3 add "Cutting Knowledge Date: December 2023\nToday Date: ...\n\n" in a system
    # block to every prompt: 20 tokens of text, plus its header (5) when there is no system message.
    ChatTemplate("llama3.1", per_message=5, per_prompt=28, reply_priming=4, text_margin=0.02),
    # <bos> ; <start_of_turn>role\n ... <end_of_turn>\n ; the system text joins the first user turn
    ChatTemplate("gemma", per_message=5, per_prompt=1, reply_priming=3, text_margin=0.05),
    # <s>[INST] ... [/INST] ... </s>: [INST] is 1 token in v3+ vocabularies, 3 in the 32k v1 one
    ChatTemplate("mistral", per_message=7, per_prompt=1, reply_priming=0, text_margin=0.30),
    # <|user|>\n ... <|end|>\n ; Phi-3 uses Llama 2's 32k SentencePiece vocabulary
    ChatTemplate("phi3", per_message=5, per_prompt=1, reply_priming=2, text_margin=0.30),
]}
# A template we do not recognise: room for headers of a few tokens each and a default system block.
UNKNOWN = ChatTemplate("unknown", per_message=10, per_prompt=32, reply_priming=10, text_margin=0.30)

# Markers in a template's source (Jinja for llama.cpp and vLLM, Go for Ollama), checked in order.
_MARKERS: tuple[tuple[str, str], ...] = (
    ("<|start_header_id|>", "llama3"),
    ("<|im_start|>", "chatml"),
    ("<|im_sep|>", "chatml"),
    ("<start_of_turn>", "gemma"),
    ("[INST]", "mistral"),
    ("<|user|>", "phi3"),
)
_LLAMA31_MARKER = "Cutting Knowledge Date"
# Model-name patterns (Ollama tags, Hugging Face ids, GGUF file names), checked in order.
_NAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(pattern), name) for pattern, name in (
    (r"llama[-_ ]?3[._-]?[123]", "llama3.1"),
    (r"llama[-_ ]?3", "llama3"),
    (r"qwen|phi[-_ ]?4|yi[-_]|hermes", "chatml"),
    (r"gemma", "gemma"),
    (r"mistral|mixtral|codestral|ministral", "mistral"),
    (r"phi[-_ ]?3", "phi3"),
))


def template_from_source(source: str | None) -> ChatTemplate | None:
    """The template whose markers ``source`` (a server's chat template text) contains, if any."""
    if not source:
        return None
    for marker, name in _MARKERS:
        if marker in source:
            if name == "llama3" and _LLAMA31_MARKER in source:
                name = "llama3.1"
            return TEMPLATES[name]
    return None


def template_from_name(model: str) -> ChatTemplate | None:
    """The template a model of this name most likely uses (a guess, when the server says nothing)."""
    lowered = model.lower()
    for pattern, name in _NAMES:
        if pattern.search(lowered):
            return TEMPLATES[name]
    return None


def template_named(name: str | None) -> ChatTemplate | None:
    """``TEMPLATES[name]``, ``UNKNOWN`` for "unknown", None for None (OpenAI's own counting rules)."""
    if name is None:
        return None
    return UNKNOWN if name == UNKNOWN.name else TEMPLATES[name]
