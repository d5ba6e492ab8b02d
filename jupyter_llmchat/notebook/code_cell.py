"""``%%chat -f code`` puts the answer's code into the cell below; running the cell again replaces it.

A kernel has one way to touch other cells: the ``set_next_input`` payload, which JupyterLab and
Notebook 7 (the same notebook code) apply either by replacing the running cell or by inserting a
new cell below it, never by changing an existing one. So the first run inserts; a re-run of the
same ``%%chat`` cell (known by the cell id both front ends send with every execution) does not
insert again: a script run in the page puts the new code into the cell right below, if that
cell still holds exactly the code put there last time. A cell the user edited, moved away or
deleted is left alone (the new code is in the cell's output). The script runs in the footer's
output, which it then becomes (nothing of it is saved in the notebook); front ends without
JavaScript outputs or cell ids get a new cell each time, as before.
"""

from __future__ import annotations

import json
from typing import Any

from .cell_watch import running_request

__all__ = ["CodeCells", "replace_script"]

# Runs with ``element`` = its output's node (JupyterLab's javascript renderer). The editor's view
# is reached through the handle JupyterLab keeps on each editor's content node for this (deprecated
# but kept for extensions; there is no other way in from an output); the change goes through the
# editor, so the notebook model, undo and collaborators see an ordinary edit.
_SCRIPT = """(function (element) {
  var before = %(before)s, code = %(code)s;
  function replace() {
    var cell = element && element.closest ? element.closest('.jp-Cell') : null;
    var next = cell ? cell.nextElementSibling : null;
    while (next && !(next.classList && next.classList.contains('jp-Cell'))) { next = next.nextElementSibling; }
    var content = next ? next.querySelector('.cm-content') : null;
    var handle = content ? content.cmView : null;
    var view = handle ? handle.view : null;
    if (!view || view.state.doc.toString() !== before) {
      console.info('llmchat: the cell below no longer holds the code put there; it was left as it is');
      return;
    }
    view.dispatch({changes: {from: 0, to: view.state.doc.length, insert: code}});
  }
  // the output is put into the page right after it renders (this runs then): see it placed first
  Promise.resolve().then(replace);
})(typeof element === 'undefined' ? null : element);"""


def replace_script(before: str, code: str) -> str:
    """JavaScript for an output of the ``%%chat`` cell: the cell right below it gets ``code`` if
    it holds exactly ``before``."""
    return _SCRIPT % {"before": _js_string(before), "code": _js_string(code)}


class CodeCells:
    """What ``-f code`` put below each ``%%chat`` cell of this kernel (by cell id), and how to
    put the next code there."""

    def __init__(self) -> None:
        self._placed: dict[str, str] = {}

    def put(self, shell: Any, code: str) -> str | None:
        """Put ``code`` below the running cell: a script to run in the page (a re-run), or None
        (the front end was asked for a new cell, or the same code is there already)."""
        cell_id = _running_cell_id(shell)
        before = self._placed.get(cell_id) if cell_id is not None else None
        if cell_id is not None:
            self._placed[cell_id] = code
        if before is None:
            shell.set_next_input(code, replace=False)
            return None
        return None if before == code else replace_script(before, code)


def _running_cell_id(shell: Any) -> str | None:
    """The id of the notebook cell being run, as JupyterLab and Notebook 7 send it (None elsewhere)."""
    cell_id = (running_request(shell).get("metadata") or {}).get("cellId")
    return cell_id if isinstance(cell_id, str) and cell_id else None


def _js_string(text: str) -> str:
    """``text`` as a JavaScript string literal that cannot end the script early."""
    return json.dumps(text).replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
