"""Stream an answer into a Jupyter cell as live Markdown that stays cheap for any answer length.

The reference recipe, ``DisplayHandle.update(Markdown(answer_so_far))`` per token, resends the
whole answer on every token: IOPub bytes and front-end work grow with the square of its length.
``MarkdownDisplaySink`` instead repaints on time (``throttle.Repainter``), moves finished
top-level blocks into frozen outputs so only the live tail is resent, keeps the number of
outputs bounded by merging frozen ones, and at the end shows the exact answer as ONE
``text/markdown`` output (earlier pieces blanked) plus a separate small footer.
No openai imports here; IPython is imported only when a display is actually published.
"""

from __future__ import annotations

import math
import re
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TextIO

from ..core.repaint import DEFAULT_INTERVAL, Repainter
from ..core.reply import PrintSink, Reply, ReplySink
from .markdown_blocks import close_open_counted, find_boundaries, sentence_cut

__all__ = [
    "DisplayPublisher",
    "IPythonPublisher",
    "MarkdownDisplaySink",
    "footer_markdown",
    "footer_parts",
    "in_notebook_kernel",
    "make_sink",
]

Bundle = dict[str, str]


class DisplayPublisher(Protocol):
    """Where display messages go: ``display_data`` (update=False) or ``update_display_data``."""

    def show(self, display_id: str, data: Bundle, *, update: bool) -> None: ...


class IPythonPublisher:
    """Publishes through the running IPython shell (ipykernel sends them on IOPub).

    New outputs go through ``publish_display_data``. Updates of an existing output skip its
    stdout/stderr flush (two round trips to ipykernel's IO thread per message, ~6x the CPU of
    the send itself): an update creates no output, so its order relative to printed text does
    not matter. That fast path uses ipykernel's display publisher (session, socket, parent
    header, hooks) when it has them, else updates are published like everything else.
    """

    def __init__(self) -> None:
        from IPython import get_ipython
        from IPython.display import publish_display_data

        self._publish = publish_display_data
        pub = getattr(get_ipython(), "display_pub", None)
        needed = ("session", "pub_socket", "parent_header", "topic")
        self._pub = pub if pub is not None and all(hasattr(pub, a) for a in needed) else None

    def show(self, display_id: str, data: Bundle, *, update: bool) -> None:
        transient = {"display_id": display_id}
        pub = self._pub
        if not update or pub is None:
            self._publish(data, metadata={}, transient=transient, update=update)
            return
        content = {"data": data, "metadata": {}, "transient": transient}
        msg = pub.session.msg("update_display_data", content, parent=pub.parent_header)
        for hook in getattr(pub, "_hooks", ()):  # e.g. an ipywidgets Output capturing the cell
            msg = hook(msg)
            if msg is None:
                return
        pub.session.send(pub.pub_socket, msg, ident=pub.topic)


@dataclass
class _Piece:
    """A stretch ``text[start:end]`` of the answer shown in output slot ``slot``.

    ``prefix`` reopens a fenced block the piece starts inside (a soft cut); ``end`` is None for
    the live tail, which grows.
    """

    slot: int
    start: int
    end: int | None = None
    prefix: str = ""

    def size(self) -> int:
        return (self.end or self.start) - self.start


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


def _escape(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def _cost(usd: float) -> str:
    if usd <= 0:
        return "$0"
    digits = max(2, 1 - math.floor(math.log10(usd)))  # two significant digits below a cent
    return f"${usd:.{digits}f}"


def footer_parts(reply: Reply) -> list[str]:
    """The footer's facts in order: model, tokens, time, cost (or "from cache")."""
    parts = [reply.model]
    if reply.usage is not None:
        u = reply.usage
        parts.append(f"{u.prompt_tokens:,} in · {u.completion_tokens:,} out tokens")
    if reply.from_cache:
        parts.append("from cache")
    else:
        if reply.total_time:
            parts.append(f"{reply.total_time:.1f} s")
        if reply.cost is not None:
            parts.append(_cost(reply.cost))
    return parts


def footer_markdown(reply: Reply, *, facts: bool = True) -> tuple[str, str] | None:
    """(markdown, plain) footer for ``reply``: its facts and, if the answer is not clean, its notice.

    The notice (interrupted, truncated, filtered, failed with partial text) is shown even when
    ``facts`` is False, because it marks the answer above as partial.
    """
    if reply.status == "failed" and not reply.text:
        return None  # no answer to mark or describe; the error itself reaches the caller
    md: list[str] = []
    plain: list[str] = []
    notice = reply.notice
    if notice:
        md.append(f"**⚠ {_escape(notice)}**")
        plain.append(f"[{notice}]")
    if facts:
        parts = footer_parts(reply)
        md.append("<sub>" + " · ".join(_escape(p) for p in parts) + "</sub>")
        plain.append("[" + " · ".join(parts) + "]")
    if not md:
        return None
    return "\n\n".join(md), "\n".join(plain)


class MarkdownDisplaySink:
    """A ``ReplySink`` that renders the streaming answer as live Markdown in a notebook cell.

    ``start`` shows a placeholder (model name, working indicator); ``write`` only collects text
    and lets the repainter decide when to repaint (at most every ``interval`` s); ``finish``
    replaces all pieces with one ``text/markdown`` output holding exactly ``reply.text`` and adds
    the footer as its own output. ``trace`` (for benchmarks) records ``(time, chars shown)`` after
    each repaint. Safe against a KeyboardInterrupt inside ``write``: ``finish`` rebuilds the final
    state from ``reply`` and the list of outputs it may have created.
    """

    def __init__(
        self,
        *,
        footer: bool = True,
        interval: float = DEFAULT_INTERVAL,
        plain_text: bool = True,
        max_outputs: int = 6,
        max_rate: int = 12,
        freeze_cost: int = 1200,
        soft_min: int = 1024,
        trailing: bool = True,
        publisher: DisplayPublisher | None = None,
        clock: Callable[[], float] = time.monotonic,
        trace: bool = False,
    ) -> None:
        if max_outputs < 2:
            raise ValueError(f"max_outputs must be at least 2, got {max_outputs}")
        self.footer = footer
        self.plain_text = plain_text
        self.max_outputs = max_outputs
        self.max_rate = max_rate
        self.freeze_cost = freeze_cost
        self.soft_min = soft_min
        self.trace: list[tuple[float, int]] | None = [] if trace else None
        self._publisher = publisher
        self._clock = clock
        self._repainter = Repainter(self._paint, interval=interval, trailing=trailing, clock=clock)
        self._tag = uuid.uuid4().hex[:10]
        self._parts: list[str] = []  # written, not yet collected (write() never takes the lock)
        self._received = 0
        self._arrivals: deque[tuple[float, int]] = deque()  # (time, chars received) per write
        self._text = ""
        self._slots: list[str] = []  # display ids, in output order
        self._shown: list[str | None] = []  # what each slot shows ("" = blank)
        self._frozen: list[_Piece] = []
        self._live: _Piece | None = None
        self._resent = 0  # bytes of Markdown sent for the live piece so far
        self._sent: deque[float] = deque()  # when display messages were sent (rate budget)
        self._finished = False

    # -- ReplySink ---------------------------------------------------------------------------

    def start(self, model: str) -> None:
        with self._repainter.lock:
            if self._live is None and not self._finished:
                slot = self._new_slot(f"*{_escape(model)} · answering…*")
                self._live = _Piece(slot, 0)
        self._repainter.start()

    def write(self, text: str) -> None:
        if text:
            now = self._clock()
            self._received += len(text)
            self._arrivals.append((now, self._received))
            self._parts.append(text)
            self._repainter.changed(now)

    def finish(self, reply: Reply) -> None:
        self._repainter.stop()
        with self._repainter.lock:
            if self._finished:
                return
            self._finished = True
            self._show_final(reply)

    # -- painting (always under the repainter's lock) ------------------------------------------

    @property
    def text(self) -> str:
        """Everything written so far."""
        with self._repainter.lock:
            return self._collect()

    def _collect(self) -> str:
        n = len(self._parts)
        if n:
            self._text += "".join(self._parts[:n])
            del self._parts[:n]
        return self._text

    def _send(self, slot: int, data: Bundle) -> None:
        if self._publisher is None:
            self._publisher = IPythonPublisher()
        created = self._shown[slot] is not None
        shown = data.get("text/markdown", "")
        self._shown[slot] = shown  # recorded first: finish() must blank it even if interrupted
        self._sent.append(self._clock())
        self._publisher.show(self._slots[slot], data, update=created)

    def _new_slot(self, markdown: str | None = None) -> int:
        """A new output after the existing ones; created by its first ``_show``."""
        self._slots.append(f"llmchat-{self._tag}-{len(self._slots)}")
        self._shown.append(None)
        slot = len(self._slots) - 1
        if markdown is not None:
            self._show(slot, markdown)
        return slot

    def _show(self, slot: int, markdown: str) -> None:
        if self._shown[slot] != markdown:
            self._send(slot, {"text/markdown": markdown} if markdown else {})

    def _piece_markdown(self, piece: _Piece) -> tuple[str, int]:
        end = len(self._text) if piece.end is None else piece.end
        return close_open_counted(piece.prefix + self._text[piece.start : end])

    def _paint(self) -> float | None:
        """Show what has arrived; if part is held back (a half-typed marker), when it arrived."""
        if self._finished:
            return None
        text = self._collect()
        if self._live is None:  # write() without start(): no placeholder, start showing now
            self._live = _Piece(self._new_slot(), 0)
        live = self._live
        cut = self._choose_cut(live, text)
        if cut is not None:
            self._freeze(*cut)
            live = self._live
        markdown, hidden = self._piece_markdown(live)
        self._show(live.slot, markdown)
        self._resent += len(markdown)
        shown = len(text) - hidden
        if self.trace is not None:
            self.trace.append((self._clock(), shown))
        arrivals = self._arrivals
        while arrivals and arrivals[0][1] <= shown:
            arrivals.popleft()
        return arrivals[0][0] if hidden and arrivals else None

    def _choose_cut(self, live: _Piece, text: str) -> tuple[int, str] | None:
        """Where to freeze the live piece: (absolute offset, prefix of the new live piece), or None.

        Rent-or-buy: freezing costs about two display messages, so the live piece is split only
        once resending it has cost ``freeze_cost`` bytes. At full speed that is every repaint;
        at 50 tokens/s every few seconds. Cuts inside a long fence or list (soft), or at a
        sentence of one long paragraph, also need the piece to be ``soft_min`` long and twice
        the rent, because they split a block visually until the answer ends.
        """
        if self._resent < self.freeze_cost:
            return None
        recent = self._sent
        while recent and recent[0] < self._clock() - 1.0:
            recent.popleft()
        if len(recent) + 2 > self.max_rate:  # a freeze adds a message or more: not this second
            return None
        skip = len(live.prefix)
        body = live.prefix + text[live.start :]
        found = find_boundaries(body)
        if found.hard > skip:
            return live.start + found.hard - skip, ""
        if len(body) < self.soft_min or self._resent < 2 * self.freeze_cost:
            return None
        if found.soft > skip:
            return live.start + found.soft - skip, found.soft_prefix
        cut = 0 if skip else sentence_cut(body)  # one long paragraph: split it at a sentence
        return (live.start + cut, "") if cut else None

    def _freeze(self, cut: int, prefix: str) -> None:
        """Move ``text[live.start:cut]`` into a frozen output; the live tail continues after it."""
        live = self._live
        assert live is not None
        piece = _Piece(live.slot, live.start, cut, live.prefix)
        first_free = (self._frozen[-1].slot + 1) if self._frozen else 0
        blank = [s for s in range(first_free, live.slot) if self._shown[s] == ""]
        if blank:  # a blanked slot sits between the frozen pieces and the live one: reuse it
            piece.slot = blank[0]
            self._frozen.append(piece)
            self._show(piece.slot, self._piece_markdown(piece)[0])
            self._live = _Piece(live.slot, cut, prefix=prefix)
        elif len(self._slots) < self.max_outputs:  # the live slot freezes; a new one follows it
            self._frozen.append(piece)
            self._show(piece.slot, self._piece_markdown(piece)[0])
            self._live = _Piece(self._new_slot(), cut, prefix=prefix)
        elif self._frozen:
            self._merge(piece)
            self._live = _Piece(live.slot, cut, prefix=prefix)
        else:
            return  # every output is taken and none is frozen (max_outputs=1 cannot happen)
        self._resent = 0

    def _merge(self, piece: _Piece) -> None:
        """No free output: merge ``piece`` with the newest frozen pieces (sizes stay geometric)."""
        group = [piece]
        merged = piece.size()
        while self._frozen and (len(group) == 1 or self._frozen[-1].size() <= 2 * merged):
            group.insert(0, self._frozen.pop())
            merged += group[0].size()
        first = group[0]
        into = _Piece(first.slot, first.start, piece.end, first.prefix)
        self._frozen.append(into)
        self._show(into.slot, self._piece_markdown(into)[0])
        for p in group[1:-1]:
            self._show(p.slot, "")

    def _show_final(self, reply: Reply) -> None:
        answer = reply.text
        data: Bundle = {"text/markdown": answer} if answer else {}
        if answer and self.plain_text:
            data["text/plain"] = answer
        if not self._slots:
            self._new_slot()
        if data or self._shown[0]:
            self._send(0, data)
        for slot in range(1, len(self._slots)):
            if self._shown[slot]:  # None: never sent; "": already blank
                self._send(slot, {})
        if self.trace is not None:
            self.trace.append((self._clock(), len(answer)))
        footer = footer_markdown(reply, facts=self.footer)
        if footer is not None:
            md, plain = footer
            self._send(self._new_slot(), {"text/markdown": md, "text/plain": plain})


def in_notebook_kernel() -> bool:
    """True inside a Jupyter kernel (ZMQ shell); False in terminal IPython or plain Python."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and any(
        cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__
    )


def make_sink(
    *,
    kind: Literal["auto", "display", "print"] = "auto",
    footer: bool = True,
    interval: float = DEFAULT_INTERVAL,
    plain_text: bool = True,
    stream: TextIO | None = None,
    **display_options: Any,
) -> ReplySink:
    """The right sink for where the code runs: live Markdown in a notebook kernel, else plain text.

    ``kind`` forces one. ``display_options`` go to ``MarkdownDisplaySink`` (max_outputs, ...);
    ``stream`` to ``PrintSink`` (default stdout, no escape codes).
    """
    if kind not in ("auto", "display", "print"):
        raise ValueError(f"kind must be 'auto', 'display' or 'print', got {kind!r}")
    if kind == "print" or (kind == "auto" and not in_notebook_kernel()):
        return PrintSink(stream)
    return MarkdownDisplaySink(
        footer=footer, interval=interval, plain_text=plain_text, **display_options
    )
