"""The loopback server as a local server: Ollama, llama.cpp, vLLM or LM Studio, strict about windows.

``LoopbackServer(imitate="llamacpp", local_models=[LocalModel("llama-3.1-8b", n_ctx=2048,
template="llama3.1")])`` answers what that server answers about its models: Ollama's ``/api/show``,
``/api/tags`` and ``/api/ps``; llama.cpp's ``/props``, ``/tokenize`` and ``/apply-template``;
vLLM's ``/v1/models`` with ``max_model_len`` and ``/tokenize``; LM Studio's ``/api/v0/models``.

Chat completions for these models are counted as such a server counts them: the messages are
rendered with the model's real chat template (special tokens and all) and tokenized with a
vocabulary holding the template's special tokens (cl100k_base's merges: Llama 3's tokenizer is
those plus 28k more). A prompt longer than ``n_ctx`` is rejected with the server's own error
(llama.cpp's ``exceed_context_size_error``, vLLM's wording). Real Ollama and LM Studio would cut
such a prompt silently; here they reject it too, so a test sees every overflow. A model without
vision that gets an image is refused as llama.cpp refuses it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ..core.tokens import get_encoding
from .validation import RequestError

if TYPE_CHECKING:
    import tiktoken

SERVERS = ("ollama", "llamacpp", "vllm", "lmstudio")
IMAGE_TOKENS = 256  # what one image costs in the imitated servers' prompts (Gemma 3's figure)
KNOWLEDGE_DATE = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                  "<|eot_id|>", "<bos>", "<start_of_turn>", "<end_of_turn>")
# The template sources the servers report (what a client recognises a template by): abridged, with
# each template's markers as the real ones have them.
JINJA_TEMPLATES = {
    "chatml": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
              "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
              "{% endif %}",
    "llama3": "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
              "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
              "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
              "{{ content }}{% endfor %}{% if add_generation_prompt %}"
              "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
    "llama3.1": "{{- bos_token }}{%- set date_string = \"26 Jul 2024\" %}{{- \"<|start_header_id|>system"
                "<|end_header_id|>\\n\\n\" }}{{- \"Cutting Knowledge Date: December 2023\\n\" }}{{- \"Today Date: "
                "\" + date_string + \"\\n\\n\" }}{{- system_message }}{{- \"<|eot_id|>\" }}{%- for message in "
                "messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
                "message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{- "
                "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}",
    "gemma": "{{ bos_token }}{% for message in loop_messages %}{{ '<start_of_turn>' + role + '\\n' + "
             "message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}"
             "{{'<start_of_turn>model\\n'}}{% endif %}",
}
GO_TEMPLATES = {  # Ollama's templates are Go templates with the same markers
    "chatml": "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
              "<|im_start|>assistant\n",
    "llama3": "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}"
              "<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
    "llama3.1": "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n\n"
                "{{ .System }}<|eot_id|>{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
                "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
    "gemma": "{{- range .Messages }}<start_of_turn>{{ if eq .Role \"user\" }}user{{ else }}model{{ end }}\n"
             "{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n",
}
ARCHITECTURES = {"chatml": "qwen2", "llama3": "llama", "llama3.1": "llama", "gemma": "gemma3"}


@dataclass(frozen=True)
class LocalModel:
    """One model a local server serves, and what it says about it."""

    name: str
    n_ctx: int  # the window it runs with: longer prompts are rejected
    template: str = "chatml"  # "chatml", "llama3", "llama3.1" or "gemma": rendered for real
    vision: bool = False
    trained_ctx: int | None = None  # its trained context length (Ollama model_info, LM Studio, llama.cpp meta)
    num_ctx_param: bool = True  # Ollama: num_ctx is in /api/show parameters (else it runs with n_ctx unsaid)
    loaded: bool = False  # Ollama /api/ps and LM Studio's state list it as loaded
    capabilities: bool = True  # Ollama /api/show has "capabilities" (older releases had none)

    def __post_init__(self) -> None:
        if self.template not in JINJA_TEMPLATES:
            raise ValueError(f"template must be one of {', '.join(JINJA_TEMPLATES)}, got {self.template!r}")
        if isinstance(self.n_ctx, bool) or not isinstance(self.n_ctx, int) or self.n_ctx < 1:
            raise ValueError(f"n_ctx must be an integer >= 1, got {self.n_ctx!r}")


@dataclass
class LocalServer:
    """Which server the loopback imitates, and its models."""

    kind: str
    models: dict[str, LocalModel] = field(default_factory=dict)

    @classmethod
    def of(cls, kind: str, models: Iterable[LocalModel]) -> LocalServer:
        if kind not in SERVERS:
            raise ValueError(f"imitate must be one of {', '.join(SERVERS)}, got {kind!r}")
        return cls(kind, {model.name: model for model in models})


# -- counting as the server counts -------------------------------------------------------------------
_VOCABULARY: tiktoken.Encoding | None = None
_VOCABULARY_LOCK = threading.Lock()


def vocabulary() -> tiktoken.Encoding:
    """cl100k_base's merges plus the templates' special tokens, one id each."""
    global _VOCABULARY
    with _VOCABULARY_LOCK:
        if _VOCABULARY is None:
            import tiktoken

            base = get_encoding("cl100k_base")
            if base is None:
                raise RuntimeError("the loopback server's local models need the cl100k_base vocabulary")
            first = base.max_token_value + 1
            specials = {**base._special_tokens,
                        **{token: first + index for index, token in enumerate(SPECIAL_TOKENS)}}
            _VOCABULARY = tiktoken.Encoding("loopback-local", pat_str=base._pat_str,
                                            mergeable_ranks=base._mergeable_ranks, special_tokens=specials)
        return _VOCABULARY


def render(template: str, messages: list[dict[str, Any]]) -> tuple[str, int]:
    """The prompt ``messages`` become under ``template``, and how many images it holds."""
    images = 0
    texts: list[tuple[str, str]] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            images += sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image_url")
            content = "".join(part.get("text", "") for part in content
                              if isinstance(part, dict) and part.get("type") == "text")
        texts.append((str(message.get("role")), content if isinstance(content, str) else ""))
    if template == "chatml":
        prompt = "".join(f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in texts)
        return prompt + "<|im_start|>assistant\n", images
    if template == "gemma":  # the system text opens the first user turn
        system = "".join(text + "\n\n" for role, text in texts if role == "system")
        turns = [(role, text) for role, text in texts if role != "system"]
        if turns and system:
            turns[0] = (turns[0][0], system + turns[0][1])
        prompt = "<bos>" + "".join(f"<start_of_turn>{'model' if role == 'assistant' else role}\n{text.strip()}"
                                   "<end_of_turn>\n" for role, text in turns)
        return prompt + "<start_of_turn>model\n", images
    prompt = "<|begin_of_text|>"
    if template == "llama3.1":  # every prompt opens with a system block holding the date
        system = texts[0][1].strip() if texts and texts[0][0] == "system" else ""
        if texts and texts[0][0] == "system":
            texts = texts[1:]
        prompt += f"<|start_header_id|>system<|end_header_id|>\n\n{KNOWLEDGE_DATE}{system}<|eot_id|>"
    prompt += "".join(f"<|start_header_id|>{role}<|end_header_id|>\n\n{text.strip()}<|eot_id|>"
                      for role, text in texts)
    return prompt + "<|start_header_id|>assistant<|end_header_id|>\n\n", images


def prompt_tokens(model: LocalModel, messages: list[dict[str, Any]]) -> int:
    """Tokens the server counts for ``messages``: the rendered template, special tokens included."""
    prompt, images = render(model.template, messages)
    return len(vocabulary().encode(prompt, allowed_special=set(SPECIAL_TOKENS))) + images * IMAGE_TOKENS


def text_tokens(text: str) -> list[int]:
    """The server's /tokenize: a text's tokens, special-token text counted as text."""
    return vocabulary().encode(text, disallowed_special=())


def check_prompt(server: LocalServer, model: LocalModel, messages: list[dict[str, Any]],
                 max_tokens: int | None = None) -> int:
    """The prompt's token count, or the server's refusal: too long for ``n_ctx`` (vLLM: with
    ``max_tokens`` for the answer), or an image for a model without vision."""
    if not model.vision and render(model.template, messages)[1]:
        raise RequestError(500, "image input is not supported - hint: if this is unexpected, you may need to "
                           "provide the mmproj", type="server_error", code=500)
    count = prompt_tokens(model, messages)
    answer = (max_tokens or 0) if server.kind == "vllm" else 0  # vLLM makes room for the whole answer
    if count + answer <= model.n_ctx:
        return count
    if server.kind == "vllm":
        raise RequestError(
            400, f"This model's maximum context length is {model.n_ctx} tokens. However, you requested "
            f"{count + answer} tokens ({count} in the messages, {answer} in the completion). Please reduce the "
            "length of the messages or completion.", type="BadRequestError", code=400, extra={"object": "error"},
            wrapped=False)
    if server.kind == "llamacpp":
        raise RequestError(400, "the request exceeds the available context size, try increasing it",
                           type="exceed_context_size_error", code=400,
                           extra={"n_prompt_tokens": count, "n_ctx": model.n_ctx})
    raise RequestError(400, f"the prompt ({count} tokens) exceeds the context length of {model.name} "
                       f"({model.n_ctx}): a real {server.kind} server would have cut it silently",
                       type="invalid_request_error", code="context_length_exceeded")


# -- what the servers answer about their models ----------------------------------------------------
def model_card_extra(server: LocalServer | None, name: str) -> dict[str, Any]:
    """Fields a server adds to its /v1/models entries (vLLM's max_model_len, llama.cpp's meta)."""
    model = server.models.get(name) if server is not None else None
    if model is None or server is None:
        return {}
    if server.kind == "vllm":
        return {"owned_by": "vllm", "root": name, "parent": None, "max_model_len": model.n_ctx}
    if server.kind == "llamacpp":
        return {"owned_by": "llamacpp", "meta": {"n_ctx_train": model.trained_ctx or model.n_ctx,
                                                 "n_vocab": vocabulary().n_vocab}}
    return {}


def answer(server: LocalServer | None, method: str, path: str, body: Any) -> tuple[int, Any] | None:
    """The (status, JSON) the imitated server answers to ``method path``, or None: not one of its routes."""
    if server is None:
        return None
    route = _ROUTES.get(server.kind, {}).get((method, path))
    if route is not None:
        return route(server, body if isinstance(body, dict) else {})
    prefix = "/api/v0/models/"
    if server.kind == "lmstudio" and method == "GET" and path.startswith(prefix):
        model = server.models.get(unquote(path[len(prefix):]))
        return (200, _lmstudio_card(model)) if model else (404, {"error": f"Model {path[len(prefix):]} not found"})
    return None


def _ollama_show(server: LocalServer, body: dict[str, Any]) -> tuple[int, Any]:
    name = str(body.get("model") or body.get("name") or "")
    model = server.models.get(name) or server.models.get(name.removesuffix(":latest"))
    if model is None:
        return 404, {"error": f"model '{name}' not found"}
    arch = ARCHITECTURES[model.template]
    parameters = [f"num_ctx {model.n_ctx}"] if model.num_ctx_param else []
    shown: dict[str, Any] = {
        "modelfile": f"FROM {model.name}\n", "parameters": "\n".join(parameters + ['stop "<|eot_id|>"']),
        "template": GO_TEMPLATES[model.template],
        "details": {"parent_model": "", "format": "gguf", "family": arch, "families": [arch],
                    "parameter_size": "8.0B", "quantization_level": "Q4_K_M"},
        "model_info": {"general.architecture": arch, f"{arch}.context_length": model.trained_ctx or model.n_ctx,
                       f"{arch}.embedding_length": 4096},
    }
    if model.capabilities:
        shown["capabilities"] = ["completion", *(["vision"] if model.vision else [])]
    return 200, shown


def _ollama_tags(server: LocalServer, body: dict[str, Any]) -> tuple[int, Any]:
    return 200, {"models": [{"name": name, "model": name, "size": 4_920_753_328, "digest": "0" * 64,
                             "details": {"format": "gguf", "family": ARCHITECTURES[model.template]}}
                            for name, model in server.models.items()]}


def _ollama_ps(server: LocalServer, body: dict[str, Any]) -> tuple[int, Any]:
    return 200, {"models": [{"name": name, "model": name, "size": 6_591_830_464, "size_vram": 6_591_830_464,
                             "context_length": model.n_ctx} for name, model in server.models.items() if model.loaded]}


def _only_model(server: LocalServer) -> LocalModel:
    return next(iter(server.models.values()))


def _llamacpp_props(server: LocalServer, body: dict[str, Any]) -> tuple[int, Any]:
    model = _only_model(server)  # one llama-server process serves one model
    return 200, {"default_generation_settings": {"id": 0, "n_ctx": model.n_ctx, "params": {"n_predict": -1}},
                 "total_slots": 1, "model_path": f"/models/{model.name}.gguf",
                 "chat_template": JINJA_TEMPLATES[model.template], "modalities": {"vision": model.vision},
                 "build_info": "b0-loopback"}


def _llamacpp_tokenize(server: LocalServer, body: dict[str, Any]) -> tuple[int, Any]:
    content = body.get("content")
    if not isinstance(content, str):
        return 400, _bad_request("\"content\" must be provided")
    tokens = text_tokens(content)
    if body.get("add_special", False):
        tokens = [vocabulary().encode_single_token("<|begin_of_text|>"), *tokens]
    return 200, {"tokens": tokens}


def _llamacpp_apply_template(server: LocalServer, body: dict[str, Any]) -> tuple[int, Any]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 400, _bad_request("\"messages\" must be provided")
    return 200, {"prompt": render(_only_model(server).template, messages)[0]}


def _bad_request(message: str) -> dict[str, Any]:
    return {"error": {"code": 400, "message": message, "type": "invalid_request_error"}}


def _vllm_tokenize(server: LocalServer, body: dict[str, Any]) -> tuple[int, Any]:
    model = server.models.get(str(body.get("model")))
    if model is None:
        return 404, {"object": "error", "message": f"The model `{body.get('model')}` does not exist.",
                     "type": "NotFoundError", "param": None, "code": 404}
    if isinstance(body.get("messages"), list):
        count = prompt_tokens(model, body["messages"])
        return 200, {"count": count, "max_model_len": model.n_ctx, "tokens": list(range(count))}
    tokens = text_tokens(str(body.get("prompt", "")))
    return 200, {"count": len(tokens), "max_model_len": model.n_ctx, "tokens": tokens}


def _lmstudio_card(model: LocalModel) -> dict[str, Any]:
    card: dict[str, Any] = {
        "id": model.name, "object": "model", "type": "vlm" if model.vision else "llm", "publisher": "loopback",
        "arch": ARCHITECTURES[model.template], "compatibility_type": "gguf", "quantization": "Q4_K_M",
        "state": "loaded" if model.loaded else "not-loaded", "max_context_length": model.trained_ctx or model.n_ctx}
    if model.loaded:
        card["loaded_context_length"] = model.n_ctx
    return card


def _lmstudio_models(server: LocalServer, body: dict[str, Any]) -> tuple[int, Any]:
    return 200, {"object": "list", "data": [_lmstudio_card(model) for model in server.models.values()]}


_ROUTES: dict[str, dict[tuple[str, str], Any]] = {
    "ollama": {("POST", "/api/show"): _ollama_show, ("GET", "/api/tags"): _ollama_tags,
               ("GET", "/api/ps"): _ollama_ps},
    "llamacpp": {("GET", "/props"): _llamacpp_props, ("POST", "/tokenize"): _llamacpp_tokenize,
                 ("POST", "/apply-template"): _llamacpp_apply_template},
    "vllm": {("POST", "/tokenize"): _vllm_tokenize},
    "lmstudio": {("GET", "/api/v0/models"): _lmstudio_models},
}
