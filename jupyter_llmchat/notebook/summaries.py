"""Notebook values as bounded plain text, for a model to read: what ``%%chat --with df`` attaches to
the question, and what the built-in notebook tools return (kernel_tools.py).

A DataFrame shows its shape, dtypes, first rows and ``describe()``; a Series the same for one column;
a numpy array its shape, dtype, statistics and a summarised printout; anything else its type, shape,
dtype or length where it has them, and a shortened repr. Only ``repr``/``to_string`` are used, never
an object's HTML or Markdown form: user data is untrusted (a cell may hold markup) and stays text.
Every summary is cut to a size limit, and says so when it is. pandas and numpy are never imported
here: a value is one of theirs only if its library is already loaded.
"""

from __future__ import annotations

import re
import reprlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ..core.errors import one_line

SUMMARY_CHARS = 4000  # one value's summary, at most
REPR_CHARS = 600  # a shortened repr, at most
CELL_CHARS = 40  # a DataFrame cell as shown in the first rows / describe()
HEAD_ROWS = 5
MAX_COLUMNS = 20  # DataFrame columns shown side by side (the rest are "...")
MAX_DTYPES = 50  # DataFrame columns listed with their dtype
ARRAY_ITEMS = 100  # arrays larger than this print summarised ("...")


def summarize(value: Any, name: str, *, limit: int = SUMMARY_CHARS) -> str:
    """``value`` described for a model, headed by ``name``; at most ``limit`` characters."""
    pandas, numpy = sys.modules.get("pandas"), sys.modules.get("numpy")
    try:
        if pandas is not None and isinstance(value, pandas.DataFrame):
            text = _dataframe(value, name)
        elif pandas is not None and isinstance(value, pandas.Series):
            text = _series(value, name)
        elif numpy is not None and isinstance(value, numpy.ndarray):
            text = _array(value, name, numpy)
        else:
            text = _other(value, name)
    except Exception as error:  # a summary must not fail because a value misbehaves
        text = f"{name}: {type_name(value)} ({_failure('summarising it', error)})"
    return bounded(text, limit)


class UnknownName(LookupError):
    """A name or attribute path that names nothing in the notebook (one line)."""


_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def value_at(path: str, namespace: Mapping[str, Any]) -> Any:
    """The value of ``name`` or ``name.attribute...`` in ``namespace`` (nothing is evaluated but
    attribute access)."""
    if not isinstance(path, str) or not _PATH.fullmatch(path.strip()):
        raise UnknownName(f"{path!r} is not a variable name (a name, or name.attribute)")
    root, *attributes = path.strip().split(".")
    if root not in namespace:
        raise UnknownName(f"the notebook has no variable {root!r}")
    value = namespace[root]
    for depth, attribute in enumerate(attributes, start=1):
        try:
            value = getattr(value, attribute)
        except Exception as error:
            where = ".".join([root, *attributes[:depth - 1]])
            raise UnknownName(f"{where} has no attribute {attribute!r} ({type(error).__name__})") from None
    return value


ATTACHED = "Values from my notebook, summarised:"


def attachment(names: Sequence[str], namespace: Mapping[str, Any]) -> str:
    """What ``%%chat --with a,b`` adds to the question: each value's summary, in a fenced text block
    that no backticks inside can close. Raises UnknownName before anything is summarised."""
    values = [(name, value_at(name, namespace)) for name in names]
    body = "\n\n".join(summarize(value, name) for name, value in values)
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{ATTACHED}\n\n{fence}text\n{body}\n{fence}"


def type_name(value: Any) -> str:
    """The short name of ``value``'s type: ``int``, ``pandas.DataFrame``, ``Point`` (defined in the
    notebook), else ``module.QualName``."""
    cls = type(value)
    module = getattr(cls, "__module__", "") or ""
    if module in ("builtins", "__main__"):
        return cls.__qualname__
    top = module.partition(".")[0]
    if getattr(sys.modules.get(top), cls.__name__, None) is cls:
        return f"{top}.{cls.__qualname__}"
    return f"{module}.{cls.__qualname__}"


SCALARS = (int, float, complex, bool, type(None))
SHORT_VALUE = 40  # a scalar or string this short is shown as its value in the variables list


def size_of(value: Any) -> str:
    """What the variables list shows of ``value``: its shape, ``len N``, or a short value."""
    if isinstance(value, (*SCALARS, str)) or _is_numpy_scalar(value):
        shown = short_repr(value)
        if len(shown) <= SHORT_VALUE and "\n" not in shown:
            return shown
    shape = _shape(value)
    if shape is not None:
        return str(shape)
    length = _length(value)
    return f"len {length:,}" if length is not None else ""


def short_repr(value: Any, limit: int = REPR_CHARS) -> str:
    """``repr(value)`` shortened: containers and strings are cut while being written (a huge list is
    never written out whole), anything else after."""
    try:
        text = _REPR.repr(value)
    except Exception as error:
        return f"<{_failure('repr', error)}>"
    return bounded(text, limit)


def bounded(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters (at a line end when one is near), with a note."""
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    if cut < limit * 0.8:
        cut = limit
    return f"{text[:cut]}\n… cut: {cut:,} of {len(text):,} characters shown"


# -- kinds ------------------------------------------------------------------------------------------
def _dataframe(frame: Any, name: str) -> str:
    rows, columns = frame.shape
    parts = [f"{name}: {type_name(frame)}, shape ({rows:,}, {columns:,})"]
    if columns:
        dtypes = frame.dtypes
        listed = dtypes.iloc[:MAX_DTYPES].to_string()
        more = f"\n… and {columns - MAX_DTYPES:,} more columns" if columns > MAX_DTYPES else ""
        parts.append(f"dtypes:\n{listed}{more}")
    if rows and columns:
        parts.append(f"first {min(rows, HEAD_ROWS)} rows:\n{_frame_text(frame.head(HEAD_ROWS))}")
        parts.append(_described(frame))
    return "\n\n".join(parts)


def _series(series: Any, name: str) -> str:
    header = f"{name}: {type_name(series)}, length {len(series):,}, dtype {series.dtype}"
    if series.name is not None:
        header += f", name {short_repr(series.name, SHORT_VALUE)}"
    parts = [header]
    if len(series):
        head = series.head(HEAD_ROWS).to_string(max_rows=HEAD_ROWS)
        parts.append(f"first {min(len(series), HEAD_ROWS)} values:\n{_cells_cut(head)}")
        parts.append(_described(series))
    return "\n\n".join(parts)


def _described(data: Any) -> str:
    try:
        described = data.describe()
    except Exception as error:
        return f"describe(): {_failure('describe()', error)}"
    text = described.to_string() if not hasattr(described, "columns") else _frame_text(described)
    return f"describe():\n{text}"


def _frame_text(frame: Any) -> str:
    return frame.to_string(max_cols=MAX_COLUMNS, max_colwidth=CELL_CHARS)


def _cells_cut(text: str) -> str:
    return "\n".join(line if len(line) <= 2 * CELL_CHARS else line[:2 * CELL_CHARS] + "…"
                     for line in text.splitlines())


def _array(array: Any, name: str, numpy: Any) -> str:
    parts = [f"{name}: {type_name(array)}, shape {tuple(array.shape)}, dtype {array.dtype}"]
    if array.size:
        stats = _array_stats(array, numpy)
        if stats:
            parts.append(stats)
        printed = numpy.array2string(array, threshold=ARRAY_ITEMS, edgeitems=3, max_line_width=100)
        parts.append(f"values:\n{printed}")
    else:
        parts.append("(empty)")
    return "\n".join(parts)


def _array_stats(array: Any, numpy: Any) -> str:
    """min, max, mean, std (ignoring NaN) of a numeric array, and how many NaN it holds."""
    kind = array.dtype.kind
    if kind == "b":
        return f"True: {int(numpy.count_nonzero(array)):,} of {array.size:,}"
    if kind not in "iuf":
        return ""
    nan = int(numpy.count_nonzero(numpy.isnan(array))) if kind == "f" else 0
    if nan == array.size:
        return f"all {nan:,} values are NaN"
    with numpy.errstate(all="ignore"):
        numbers = [numpy.nanmin(array), numpy.nanmax(array), numpy.nanmean(array), numpy.nanstd(array)]
    stats = ", ".join(f"{label} {_number(x)}" for label, x in zip(("min", "max", "mean", "std"), numbers))
    return f"{stats}, NaN {nan:,}" if kind == "f" else stats


def _number(x: Any) -> str:
    return f"{float(x):.6g}"


def _other(value: Any, name: str) -> str:
    facts = [type_name(value)]
    shape = _shape(value)
    if shape is not None:
        facts.append(f"shape {shape}")
        dtype = getattr(value, "dtype", None)
        if dtype is not None:
            facts.append(f"dtype {dtype}")
    elif not isinstance(value, SCALARS):
        length = _length(value)
        if length is not None:
            facts.append(f"len {length:,}")
    return f"{name}: {', '.join(facts)}\n{short_repr(value)}"


# -- facts that may fail ----------------------------------------------------------------------------
def _shape(value: Any) -> tuple[int, ...] | None:
    """``value.shape`` as a tuple of ints, or None (no shape, a class, a numpy scalar, or a shape
    that is not one)."""
    if isinstance(value, type) or _is_numpy_scalar(value):
        return None
    try:
        shape = getattr(value, "shape", None)
        if shape is None or isinstance(shape, (str, bytes)):
            return None
        return tuple(int(n) for n in shape)
    except Exception:
        return None


LAZY_LIBRARIES = ("dask",)  # len() of their collections computes them: never asked


def _length(value: Any) -> int | None:
    if isinstance(value, type) or not hasattr(type(value), "__len__"):
        return None
    if (getattr(type(value), "__module__", "") or "").partition(".")[0] in LAZY_LIBRARIES:
        return None
    try:
        return len(value)
    except Exception:
        return None


def _is_numpy_scalar(value: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.generic)


def _failure(what: str, error: BaseException) -> str:
    return one_line(f"{what} failed: {type(error).__name__}: {error}", 200)


class _Shortener(reprlib.Repr):
    """reprlib's bounded repr of containers; any other object's repr is cut after being written, and
    one that fails says so (reprlib would show its memory address instead)."""

    def repr_instance(self, x: Any, level: int) -> str:
        text = repr(x)
        return text if len(text) <= self.maxother else text[:self.maxother] + "..."


def _bounded_repr() -> reprlib.Repr:
    shortener = _Shortener()
    shortener.maxstring = shortener.maxother = REPR_CHARS
    shortener.maxlist = shortener.maxtuple = shortener.maxset = shortener.maxfrozenset = 30
    shortener.maxdeque = shortener.maxarray = 30
    shortener.maxdict = 20
    shortener.maxlevel = 4
    shortener.maxlong = 100
    return shortener


_REPR = _bounded_repr()
