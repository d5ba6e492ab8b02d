"""%chat line commands in a real (in-process) IPython shell against the loopback server.

The notebook-level checks (tables as Markdown, a second kernel, the panel widget) are in
test_magics.py; here each command's parsing, text output and one-line errors, quickly.
"""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from jupyter_llmchat.notebook.commands import COMMANDS, LINE_HELP
from jupyter_llmchat.notebook.magics import ChatMagics, current, load_ipython_extension, unload_ipython_extension


@pytest.fixture
def shell(loopback, monkeypatch: pytest.MonkeyPatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LLMCHAT_MODEL", "LLMCHAT_SYSTEM", "JUPYTER_LLMCHAT_STORE"):
        monkeypatch.delenv(name, raising=False)
    shell = InteractiveShell.instance()
    load_ipython_extension(shell)
    shell.run_line_magic("config", f"ChatMagics.base_url = '{loopback.base_url}'")
    shell.run_line_magic("config", "ChatMagics.footer = False")
    shell.run_line_magic("config", "ChatMagics.store = ':memory:'")  # each test starts with an empty store
    yield shell
    unload_ipython_extension(shell)


def chat(shell, line: str) -> None:
    shell.run_line_magic("chat", line)


def test_help_lists_every_command(shell, capsys) -> None:
    chat(shell, "")
    out = capsys.readouterr().out
    assert out == LINE_HELP + "\n"
    for command in COMMANDS:
        assert f"%chat {command}" in out


def test_model_and_system_for_all_sessions_or_one(shell, loopback, capsys) -> None:
    loopback.queue(reply="a", times=3)
    shell.run_cell_magic("chat", "-s one", "q")
    chat(shell, "model gpt-4.1")
    chat(shell, "system 'Quoted text'")  # for every session ...
    chat(shell, "system -s one You are   terse.")  # ... then one session gets its own
    out = capsys.readouterr().out.splitlines()
    assert out[-3:] == ["model for all sessions: 'gpt-4.1'", "system for all sessions: 'Quoted text'",
                        "system for session 'one': 'You are   terse.'"]
    shell.run_cell_magic("chat", "-s one", "q2")
    shell.run_cell_magic("chat", "-s two", "q3")
    bodies = [r.body for r in loopback.requests]
    assert bodies[1]["model"] == "gpt-4.1" and bodies[1]["messages"][0] == {"role": "system",
                                                                            "content": "You are   terse."}
    assert bodies[2]["messages"][0] == {"role": "system", "content": "Quoted text"}  # a pin wins only its session
    capsys.readouterr()
    chat(shell, "model -s one")
    chat(shell, "system -s two")
    assert capsys.readouterr().out == "gpt-4.1\nQuoted text\n"
    chat(shell, 'system ""')
    assert capsys.readouterr().out == "system cleared for all sessions\n"


def test_reset_all_and_models(shell, loopback, capsys) -> None:
    loopback.queue(reply="a", times=2)
    shell.run_cell_magic("chat", "", "q")
    shell.run_cell_magic("chat", "-s b", "q")
    capsys.readouterr()
    chat(shell, "reset --all")
    assert capsys.readouterr().out == "reset 2 session(s)\n"
    assert [len(bot.conversation) for _, bot in current().sessions.items()] == [0, 0]
    chat(shell, "models")
    assert "gpt-4o-mini" in capsys.readouterr().out.split()


@pytest.mark.parametrize("line, message", [
    ("frob", "unknown %chat command 'frob'; commands: reset, history, sessions, usage, config, model, system, "
             "save, load, restore, saved, models, panel (ask with %%chat)"),
    ("reset a b", "%chat reset takes at most one session name"),
    ("history nosuch", "unknown session 'nosuch' (sessions: default); start it by asking with -s nosuch"),
    ("model a b", "%chat model takes one model name, e.g. %chat model gpt-4o"),
    ("model -s", "-s needs a session name"),
    ("save", "%chat save needs one PATH, e.g. %chat save chat.json"),
    ("load a b", "%chat load needs one PATH, e.g. %chat load chat.json"),
    ("usage x", "%chat usage takes no arguments"),
    ("config x", "%chat config takes no arguments; set values with %config ChatMagics.NAME = VALUE or the "
                 "environment variables shown"),
    ("save 'unclosed", "cannot parse \"'unclosed\": No closing quotation"),
    ("restore proj", "no saved session 'proj' in the store (saved sessions: none yet); %chat saved lists them"),
    ("-m gpt-4o", "to ask a question use the cell magic: %%chat [options] on the first line, the question below "
                  "(only %chat --error works on one line)"),
])
def test_bad_commands_are_one_line_usage_errors(shell, line: str, message: str) -> None:
    chat(shell, "sessions")  # makes the default session, so the unknown-session message is stable
    with pytest.raises(UsageError) as caught:
        chat(shell, line)
    assert str(caught.value) == message


def test_config_never_shows_the_key(shell, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-shown-123456")
    chat(shell, "config")
    out = capsys.readouterr().out
    assert "sk-never-shown" not in out and "set (hidden)" in out
    assert "sk-never-shown" not in repr(current()) + repr(current().client())
    assert isinstance(current(), ChatMagics)


def test_json_mode_mentions_json_when_the_prompt_does_not(shell, loopback, capsys) -> None:
    # OpenAI rejects JSON mode unless a message mentions JSON; the magic adds it to the system message.
    loopback.queue(reply='{"primes": [2, 3]}', times=2)
    shell.run_cell_magic("chat", "--json --no-history", "List two primes")
    shell.run_cell_magic("chat", "--json --no-history", "List two primes as JSON")
    first, second = [r.body for r in loopback.requests if r.path.endswith("/chat/completions")]
    assert first["messages"] == [{"role": "system", "content": "Respond with one valid JSON object."},
                                 {"role": "user", "content": "List two primes"}]
    assert second["messages"] == [{"role": "user", "content": "List two primes as JSON"}]
