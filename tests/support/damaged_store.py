"""Store files in the states users meet them in: pages damaged on disk, or read-only.

``damage_pages`` overwrites every page but the schema's, as a bad disk or a half-copied file
would: the file still opens (its header, schema version and schema are intact), but reading or
writing conversations fails with SQLite's "database disk image is malformed". ``permission_bound`` is the
command prefix that runs a child process bound by file permissions even when the tests run as root
(root writes a read-only file otherwise).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from jupyter_llmchat.store.store import Store

PAGE = 4096  # SQLite's default page size, what the store uses


def filled_store(path: Path, sessions: int = 3) -> Path:
    """A closed store file with a few conversations in it (several pages)."""
    from jupyter_llmchat.core.messages import Message

    with Store(path) as store:
        for number in range(sessions):
            conversation = store.new_conversation(f"s{number}", model="gpt-4o-mini")
            for turn in range(20):
                store.add_message(conversation, Message("user", f"question {turn} " + "x" * 400, 100))
    return path


def damage_pages(path: Path) -> None:
    """Overwrite every page but the schema's (the first holds the header and schema version; a
    schema with many tables goes on over more pages) with a fixed pattern."""
    size = path.stat().st_size
    assert size > 3 * PAGE, "a store with a few pages to damage"
    keep = schema_pages(path)
    with open(path, "r+b") as file:
        for page in range(1, size // PAGE):
            if page + 1 not in keep:  # SQLite numbers pages from 1
                file.seek(page * PAGE)
                file.write(b"\xa5\x5a" * (PAGE // 2))


def schema_pages(path: Path) -> set[int]:
    """The pages (numbered from 1) holding the schema table, sqlite_schema."""
    with closing(sqlite3.connect(path)) as db:
        try:
            return {row[0] for row in db.execute("SELECT pageno FROM dbstat WHERE name = 'sqlite_schema'")}
        except sqlite3.OperationalError:  # an SQLite built without the dbstat table: the schema fits page 1
            return {1}


def permission_bound() -> list[str]:
    """Prefix for a child process that file permissions bind: nothing for a normal user; for root,
    ``setpriv`` without the capabilities that let root ignore them."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only file cannot be made read-only for us")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
