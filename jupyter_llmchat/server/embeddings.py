"""``POST /v1/embeddings`` as OpenAI answers it, with deterministic vectors.

Each text's vector comes from a generator seeded by the SHA-256 of the model and the text: the
same text always gets the same vector, different texts different ones, normalized to length 1 as
OpenAI's are. ``dimensions`` shortens it the way OpenAI's text-embedding-3 models do (the first
components, normalized again). Usage counts the inputs' tokens (cl100k_base); ``encoding_format``
"base64" sends the float32 bytes, as the openai SDK asks by default. The limits OpenAI enforces
(inputs per request, tokens per input and per request, empty inputs, dimensions) are 400s in its
wording.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import numpy as np

from .encoding import encoder
from .validation import RequestError, model_not_found

# model -> its vectors' native length
NATIVE_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
SHORTENS = ("text-embedding-3-small", "text-embedding-3-large")  # take dimensions=
MAX_INPUTS = 2048  # inputs per request
MAX_INPUT_TOKENS = 8192  # tokens per input
MAX_REQUEST_TOKENS = 300_000  # tokens per request, all inputs together


def embeddings_body(body: Any, served: tuple[str, ...]) -> dict[str, Any]:
    """The response to an embeddings request body, or RequestError as OpenAI words it."""
    if not isinstance(body, dict):
        raise RequestError(400, "We could not parse the JSON body of your request. (HINT: This likely means you "
                                "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(400, "you must provide a model parameter", param="model")
    if model not in served or model not in NATIVE_DIMENSIONS:
        raise model_not_found(model)
    texts = _inputs(body.get("input"))
    dimensions = _dimensions(body.get("dimensions"), model)
    encoding_format = body.get("encoding_format", "float")
    if encoding_format not in ("float", "base64"):
        raise RequestError(400, f"Invalid value for 'encoding_format': expected 'float' or 'base64', got "
                                f"{encoding_format!r}.", param="encoding_format", code="invalid_value")
    encode = encoder("cl100k_base")
    counts = [len(encode(text)) for text in texts]
    for index, count in enumerate(counts):
        if count > MAX_INPUT_TOKENS:
            raise RequestError(400, f"This model's maximum context length is {MAX_INPUT_TOKENS} tokens, however you "
                                    f"requested {count} tokens ({count} in your prompt; 0 for the completion). Please "
                                    "reduce your prompt; or completion length.", param=f"input[{index}]",
                               code="context_length_exceeded")
    if sum(counts) > MAX_REQUEST_TOKENS:
        raise RequestError(400, f"Requested {sum(counts)} tokens, max {MAX_REQUEST_TOKENS} tokens per request",
                           param="input", code="max_tokens_per_request")
    data = []
    for index, text in enumerate(texts):
        vector = embedding_vector(model, text, dimensions)
        value: Any = base64.b64encode(vector.tobytes()).decode() if encoding_format == "base64" else vector.tolist()
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = sum(counts)
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def embedding_vector(model: str, text: str, dimensions: int | None = None) -> np.ndarray:
    """The deterministic float32 vector of ``text`` (little-endian), normalized to length 1."""
    seed = int.from_bytes(hashlib.sha256(f"{model}\0{text}".encode()).digest()[:16], "little")
    full = np.random.Generator(np.random.PCG64(seed)).standard_normal(NATIVE_DIMENSIONS[model])
    vector = full[:dimensions] if dimensions else full
    return (vector / np.linalg.norm(vector)).astype("<f4")


def _inputs(value: Any) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts:
        raise RequestError(400, "'$.input' is invalid. Please check the API reference: "
                                "https://platform.openai.com/docs/api-reference.", param="input")
    if len(texts) > MAX_INPUTS:
        raise RequestError(400, f"'$.input' is invalid: at most {MAX_INPUTS} inputs per request, got {len(texts)}.",
                           param="input")
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text:
            raise RequestError(400, f"'$.input[{index}]' is invalid. Please check the API reference: "
                                    "https://platform.openai.com/docs/api-reference.", param=f"input[{index}]")
    return texts


def _dimensions(value: Any, model: str) -> int | None:
    if value is None:
        return None
    if model not in SHORTENS:
        raise RequestError(400, "This model does not support specifying dimensions.", param="dimensions")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= NATIVE_DIMENSIONS[model]:
        raise RequestError(400, f"Invalid value for 'dimensions' = {value}. Must be between 1 and "
                                f"{NATIVE_DIMENSIONS[model]}.", param="dimensions", code="invalid_value")
    return value
