"""The Batch API over HTTP: upload a JSONL file (/v1/files, purpose "batch"), create, retrieve and
cancel a batch (/v1/batches), download its output and error files.

OpenAI and Azure alike, through the ChatClient's SDK client (one connection pool, its retries, its
key): on Azure the files and batches live under /openai/ (the SDK routes them there) and the
lines' URL and the batch's endpoint are spelled "/chat/completions"; the lines' model is the name of
a batch deployment. Nothing of the SDK leaves this module: a batch is a ``BatchStatus``, a failure is
a one-line ChatError naming cause and fix (a server without the Batch API says so).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .. import errors
from .chat import _retries_taken

if TYPE_CHECKING:
    from .chat import ChatClient

OPENAI_ENDPOINT = "/v1/chat/completions"
AZURE_ENDPOINT = "/chat/completions"  # Azure's spelling, for the batch and each of its lines
FINAL_STATUSES = ("completed", "failed", "expired", "cancelled")
_T = TypeVar("_T")


@dataclass(frozen=True)
class BatchStatus:
    """A provider batch as last seen: its status, request counts and files."""

    id: str
    status: str  # validating, in_progress, finalizing, completed, failed, expired, cancelling, cancelled
    input_file_id: str
    output_file_id: str | None = None
    error_file_id: str | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    errors: tuple[str, ...] = ()  # a failed batch's reasons, one line each ("line 3: invalid_json_line: ...")

    @property
    def final(self) -> bool:
        """True once the batch will change no more (its files, if any, are ready)."""
        return self.status in FINAL_STATUSES


class BatchClient:
    """The Batch API of the endpoint a ChatClient talks to."""

    def __init__(self, client: ChatClient) -> None:
        self.client = client

    @property
    def azure(self) -> bool:
        """True when the endpoint is Azure OpenAI (its batch deployments)."""
        import openai

        return isinstance(self.client.sdk, openai.AzureOpenAI)

    @property
    def endpoint(self) -> str:
        """The endpoint a batch of chat completions names, and each of its lines' URL."""
        return AZURE_ENDPOINT if self.azure else OPENAI_ENDPOINT

    def upload(self, content: bytes, filename: str) -> str:
        """Upload a JSONL file of requests (purpose "batch"); returns its file id."""
        uploaded = self._call(lambda sdk: sdk.files.create(file=(filename, content, "application/jsonl"),
                                                           purpose="batch"), doing="POST /files")
        return str(uploaded.id)

    def create(self, input_file_id: str, *, metadata: dict[str, str] | None = None) -> BatchStatus:
        """Start a batch over an uploaded file (completion window 24 h, the only one there is)."""
        return _status(self._call(lambda sdk: sdk.batches.create(
            input_file_id=input_file_id, endpoint=self.endpoint, completion_window="24h", metadata=metadata),
            doing="POST /batches", missing_file=input_file_id))

    def retrieve(self, batch_id: str) -> BatchStatus:
        return _status(self._call(lambda sdk: sdk.batches.retrieve(batch_id), doing=f"GET /batches/{batch_id}",
                                  missing=f"no batch {batch_id!r}"))

    def cancel(self, batch_id: str) -> BatchStatus:
        """Ask the provider to cancel; answered rows are kept in its output file."""
        return _status(self._call(lambda sdk: sdk.batches.cancel(batch_id),
                                  doing=f"POST /batches/{batch_id}/cancel", missing=f"no batch {batch_id!r}"))

    def download(self, file_id: str) -> bytes:
        """A file's content (a batch's output or error JSONL, or its input)."""
        return bytes(self._call(lambda sdk: sdk.files.content(file_id).content, doing=f"GET /files/{file_id}/content",
                                missing=f"no file {file_id!r} (files of a batch expire 30 days after it was made)"))

    def _call(self, request: Callable[[Any], _T], *, doing: str, missing: str | None = None,
              missing_file: str | None = None) -> _T:
        """Run one SDK request (the SDK retries what it may); its failure as a one-line ChatError.
        ``missing_file``: a file id the request names; a 404 that names it is about the file, not the API."""
        import openai

        where = self.client.base_url
        try:
            return request(self.client.sdk)
        except openai.APIStatusError as error:
            said = self.client.scrub(errors.one_line(str(_message(error.body) or "not found")))
            if missing_file is not None and error.status_code == 404 and missing_file in said:
                missing = f"no file {missing_file!r}"
            if missing is not None and error.status_code == 404:  # the batch or file, not the API, is missing
                raise errors.BatchError(f"{missing} at {where} (404: {said}): was it made with another endpoint "
                                        "or key?", status=404) from None
            if missing is None and error.status_code in (404, 405, 501):
                raise errors.BatchError(
                    f"{where} has no Batch API ({doing} answered {error.status_code}: {said}): use map() without "
                    "mode='batch', or an endpoint that has one (OpenAI, an Azure batch deployment)",
                    status=error.status_code) from None
            raise self.client.map_error(error, model=None, retries=_retries_taken(error)) from None
        except openai.APIError as error:
            raise self.client.map_error(error, model=None, retries=_retries_taken(error)) from None


def _status(batch: Any) -> BatchStatus:
    counts = batch.request_counts
    found = (batch.errors.data if batch.errors is not None else None) or []
    reasons = tuple(errors.one_line(
        " ".join(part for part in (f"line {e.line}:" if e.line else "", f"{e.code}:" if e.code else "",
                                   e.message or "") if part)) for e in found)
    return BatchStatus(id=batch.id, status=batch.status, input_file_id=batch.input_file_id,
                       output_file_id=batch.output_file_id, error_file_id=batch.error_file_id,
                       total=counts.total if counts else 0, completed=counts.completed if counts else 0,
                       failed=counts.failed if counts else 0, errors=reasons)


def _message(body: Any) -> Any:
    if isinstance(body, dict):
        inner = body.get("error")
        return (inner.get("message") if isinstance(inner, dict) else None) or body.get("message")
    return body

