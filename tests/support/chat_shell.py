"""The in-process IPython shell with the chat magics loaded, for tests of the magics and commands."""

from __future__ import annotations

from IPython.core.interactiveshell import InteractiveShell

from jupyter_llmchat.notebook.magics import load_ipython_extension


def chat_shell(base_url: str) -> InteractiveShell:
    """The (process-wide) shell with the magics loaded against ``base_url``, without footers (an
    output is the answer alone) and with a store in memory (each test starts with an empty one).
    The caller unloads the extension when its test ends."""
    shell = InteractiveShell.instance()
    load_ipython_extension(shell)
    shell.run_line_magic("config", f"ChatMagics.base_url = '{base_url}'")
    shell.run_line_magic("config", "ChatMagics.footer = False")
    shell.run_line_magic("config", "ChatMagics.store = ':memory:'")
    return shell
