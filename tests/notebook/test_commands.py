"""%chat line commands in a real (in-process) IPython shell against the loopback server.

The notebook-level checks (tables as Markdown, a second kernel, the panel widget) are in
test_magics.py; here each command's parsing (shell-style, one magic_arguments parser each), its
help, text output and one-line errors, quickly.
"""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from support.chat_shell import chat_shell

from jupyter_llmchat.notebook.arguments import usage_line
from jupyter_llmchat.notebook.commands import COMMAND_LIST, COMMANDS, HELP, usage_table
from jupyter_llmchat.notebook.magics import ChatMagics, current, unload_ipython_extension
from jupyter_llmchat.store.ledger import UsageRow


@pytest.fixture
def shell(loopback, monkeypatch: pytest.MonkeyPatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LLMCHAT_MODEL", "LLMCHAT_SYSTEM", "JUPYTER_LLMCHAT_STORE"):
        monkeypatch.delenv(name, raising=False)
    shell = chat_shell(loopback.base_url)
    yield shell
    unload_ipython_extension(shell)
    dict.pop(shell.config, "ChatMagics", None)  # the shell is shared: the next test's magics start afresh


def chat(shell, line: str) -> None:
    shell.run_line_magic("chat", line)


def test_bare_chat_lists_every_command_with_its_usage(shell, capsys) -> None:
    chat(shell, "")
    out = capsys.readouterr().out
    assert out == COMMAND_LIST + "\n"
    lines = out.splitlines()
    assert lines[0].startswith("%%chat [options]   ") and lines[-1].startswith("%chat --error [options]   ")
    assert [line.split("  ")[0] for line in lines[1:-1]] == [
        "%chat reset [--all] [SESSION]", "%chat history [SESSION]", "%chat sessions",
        "%chat usage [--by GROUP [GROUP ...]] [-s NAME]", "%chat config", "%chat model [-s NAME] [MODEL]",
        "%chat system [-s NAME] [TEXT ...]", "%chat save [-s NAME] PATH", "%chat load [-s NAME] PATH",
        "%chat restore [-s NAME] SAVED", "%chat saved", "%chat tools [-s NAME] [--clear]", "%chat models",
        "%chat batches [-s NAME] [--cancel] [--no-wait] [JOB]", "%chat panel [SESSION]"]


def test_chat_help_documents_each_command_with_its_arguments(shell, capsys) -> None:
    shell.run_line_magic("pinfo", "%chat")  # what %chat? shows
    page = capsys.readouterr().out
    assert HELP in page
    assert "::" not in HELP and "``" not in HELP and "<" not in HELP  # plain text, not reST
    for name, handler in COMMANDS.items():
        help_text = handler.__doc__
        assert help_text == handler.parser.format_help()  # magic_arguments wrote it from the parser
        assert help_text.startswith(f"usage: {usage_line(handler)}\n") and help_text in HELP, name
        for action in handler.parser._actions:
            assert action.help and action.help.replace("%%", "%")[:40] in " ".join(help_text.split()), (
                name, action.dest)
    assert "  --by GROUP [GROUP ...]\n" in HELP and "  PATH                  The JSON file to write" in HELP


def test_model_and_system_for_all_sessions_or_one(shell, loopback, capsys) -> None:
    loopback.queue(reply="a", times=3)
    shell.run_cell_magic("chat", "-s one", "q")
    chat(shell, "model gpt-4.1")
    chat(shell, "system Plain words,   unquoted")  # for every session: words joined by one space ...
    chat(shell, "system 'Quoted text'")  # ... quotes removed as a shell removes them ...
    chat(shell, 'system -s one "You are   terse, don\'t ramble."')  # ... then one session gets its own
    out = capsys.readouterr().out.splitlines()
    assert out[-4:] == ["model for all sessions: 'gpt-4.1'", "system for all sessions: 'Plain words, unquoted'",
                        "system for all sessions: 'Quoted text'",
                        "system for session 'one': \"You are   terse, don't ramble.\""]
    shell.run_cell_magic("chat", "-s one", "q2")
    shell.run_cell_magic("chat", "-s two", "q3")
    bodies = [r.body for r in loopback.requests]
    assert bodies[1]["model"] == "gpt-4.1" and bodies[1]["messages"][0] == {
        "role": "system", "content": "You are   terse, don't ramble."}
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
             "save, load, restore, saved, tools, models, batches, panel (ask with %%chat)"),
    ("reset a b", "%chat reset: unrecognized arguments: b; usage: %chat reset [--all] [SESSION]"),
    ("reset a --all", "%chat reset takes a SESSION or --all, not both"),
    ("history nosuch", "unknown session 'nosuch' (sessions: default); start it by asking with -s nosuch"),
    ("model a b", "%chat model: unrecognized arguments: b; usage: %chat model [-s NAME] [MODEL]"),
    ("model -s", "%chat model: argument -s/--session: expected one argument; usage: %chat model [-s NAME] [MODEL]"),
    ("model ''", "%chat model needs a model name, e.g. %chat model gpt-4o"),
    ("save", "%chat save: the following arguments are required: PATH; usage: %chat save [-s NAME] PATH"),
    ("load a b", "%chat load: unrecognized arguments: b; usage: %chat load [-s NAME] PATH"),
    ("usage x", "%chat usage: unrecognized arguments: x; usage: %chat usage [--by GROUP [GROUP ...]] [-s NAME]"),
    ("usage --by week", "%chat usage: argument --by: invalid choice: 'week' (choose from 'session', 'model', "
                        "'day'); usage: %chat usage [--by GROUP [GROUP ...]] [-s NAME]"),
    ("config x", "%chat config: unrecognized arguments: x; usage: %chat config"),
    ("save 'unclosed", "cannot parse \"save 'unclosed\": No closing quotation; %chat? lists the commands and "
                       "their arguments"),
    ("system don't", "cannot parse \"system don't\": No closing quotation; %chat? lists the commands and their "
                     "arguments"),
    ("restore proj", "%chat restore needs a store file, and this kernel keeps conversations in memory only: "
                     "%config ChatMagics.store = 'default' (or a file path), or set JUPYTER_LLMCHAT_STORE"),
    ("tools x", "%chat tools: unrecognized arguments: x; usage: %chat tools [-s NAME] [--clear]"),
    ("tools -s nosuch", "unknown session 'nosuch' (sessions: default); start it by asking with -s nosuch"),
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


def test_restore_names_what_the_store_file_holds(shell, tmp_path) -> None:
    shell.run_line_magic("config", f"ChatMagics.store = '{tmp_path / 'chat.sqlite3'}'")
    with pytest.raises(UsageError) as caught:
        chat(shell, "restore proj")
    assert str(caught.value) == "no saved session 'proj' in the store (saved sessions: none yet); %chat saved lists them"


def test_usage_comes_from_the_ledger_even_in_memory(shell, loopback, capsys) -> None:
    chat(shell, "usage")
    assert capsys.readouterr().out == "no replies recorded yet\n"
    loopback.queue(reply="a", times=3)
    shell.run_cell_magic("chat", "-s 'two words'", "q")  # quoted: a session name with a space
    shell.run_cell_magic("chat", "-s b", "q")
    shell.run_cell_magic("chat", "-s b --no-history", "q")  # one-off questions count too
    assert current().opened_store().in_memory
    rows = current().opened_store().usage_summary(("session", "model"))
    capsys.readouterr()
    chat(shell, "usage")
    table, note = usage_table(rows)
    assert note is None and [row[:3] for row in table] == [
        ("session", "model", "requests"), ("b", "gpt-4o-mini", "2"), ("two words", "gpt-4o-mini", "1"),
        ("total", "", "3")]
    assert capsys.readouterr().out.splitlines()[0].split() == [
        "session", "model", "requests", "from", "cache", "prompt", "tokens", "cached", "tokens", "completion",
        "tokens", "cost"]
    chat(shell, "usage -s b --by model day")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["model", "day", "requests"] and len(lines) == 2  # one group: no total


def test_usage_table_cells_costs_and_the_note_on_replies_without_usage() -> None:
    rows = [UsageRow({"session": "a"}, requests=3, cache_hits=1, prompt_tokens=1500, completion_tokens=300,
                     cached_tokens=400, cost=0.000375),
            UsageRow({"session": "b"}, requests=2, prompt_tokens=10, completion_tokens=5, cost=0.0, unpriced=2,
                     unreported=1),
            UsageRow({"session": "c"}, requests=2, prompt_tokens=10, cost=0.25, unpriced=1)]
    table, note = usage_table(rows)
    assert table == [
        ("session", "requests", "from cache", "prompt tokens", "cached tokens", "completion tokens", "cost"),
        ("a", "3", "1", "1,500", "400", "300", "$0.00038"),
        ("b", "2", "0", "10", "0", "5", "unknown"),
        ("c", "2", "0", "10", "0", "0", "$0.25 + unknown"),
        ("total", "7", "1", "1,520", "400", "305", "$0.25 + unknown")]
    assert note == ("1 of 7 replies came without token counts from the endpoint: they count 0 tokens, and cost "
                    "$0 if no text arrived, else an unknown amount.")


def test_usage_table_says_demo_no_cost_for_the_offline_demo_s_replies() -> None:
    rows = [UsageRow({"model": "gpt-4o-mini"}, requests=2, prompt_tokens=40, completion_tokens=300, demo=2),
            UsageRow({"model": "gpt-4o"}, requests=1, prompt_tokens=10, completion_tokens=5, cost=0.000075)]
    table, note = usage_table(rows)
    assert [row[-1] for row in table] == ["cost", "demo, no cost", "$0.000075", "$0.000075"]
    assert note == "2 of 3 replies came from the offline demo server, not from a model: they cost nothing."
    table, _ = usage_table(rows[:1])
    assert table[-1][-1] == "demo, no cost"


def config_rows(shell, capsys) -> dict[str, list[str]]:
    """``%chat config``'s rows (text/plain), by setting: value, source, variable."""
    capsys.readouterr()
    chat(shell, "config")
    lines = capsys.readouterr().out.splitlines()
    starts = [lines[0].index(word) for word in ("value", "source", "environment variable")]
    return {line[:starts[0]].strip(): [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None])]
            for line in lines[1:]}


def test_config_sources_follow_jupyter_precedence(shell, loopback, capsys, monkeypatch) -> None:
    monkeypatch.setenv("LLMCHAT_MODEL", "gpt-4.1-mini")  # inherited by the kernel
    monkeypatch.setenv("LLMCHAT_SEED", "7")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-inherited-0000")
    shell.run_line_magic("config", "ChatMagics.model = 'gpt-4o'")  # typed in the notebook: it wins
    rows = config_rows(shell, capsys)
    assert rows["model"] == ["'gpt-4o'", "%config / config file", "LLMCHAT_MODEL"]
    assert rows["seed"] == ["7", "env LLMCHAT_SEED", "LLMCHAT_SEED"]  # nothing set it in the notebook
    assert rows["temperature"] == ["None", "default", "LLMCHAT_TEMPERATURE"]
    assert rows["api_key"] == ["set (hidden)", "env OPENAI_API_KEY", "OPENAI_API_KEY"]
    assert rows["endpoint"] == [loopback.base_url, "base_url (%config / config file)", ""]
    chat(shell, "model gpt-4.1")  # %chat model beats %config
    assert config_rows(shell, capsys)["model"] == ["'gpt-4.1'", "%chat model", "LLMCHAT_MODEL"]
    shell.run_line_magic("config", f"ChatMagics.azure_endpoint = '{loopback.root_url}'")
    rows = config_rows(shell, capsys)
    assert rows["api_key"] == ["not used with Azure", "env OPENAI_API_KEY (Azure reads AZURE_OPENAI_API_KEY)",
                               "OPENAI_API_KEY"]
    assert rows["endpoint"] == [loopback.root_url, "azure_endpoint (%config / config file)", ""]
    assert "sk-inherited" not in repr(rows)


def test_tools_lists_a_sessions_tools_and_clears_them(shell, loopback, capsys) -> None:
    """``%%chat --tools`` adds the notebook's functions to the session (its errors are one line and
    send nothing); ``%chat tools`` lists name, description, parameters and confirm; --clear empties."""
    shell.run_cell(
        "from typing import Literal\n"
        "from jupyter_llmchat.core.tools import tool\n"
        "def forecast(city: str, days: int = 3, unit: Literal['C', 'F'] = 'C') -> str:\n"
        "    \"\"\"The weather ahead for a city.\n\n    Args:\n        city: Where.\n    \"\"\"\n"
        "    return f'{city}: sunny for {days} days'\n"
        "@tool(confirm=True)\n"
        "def delete_file(path: str) -> str:\n"
        "    \"\"\"Delete a file (asks first).\"\"\"\n"
        "    return 'kept'\n"
        "number = 3\n"
        "class Point:\n    pass\n"
        "def varargs(*names):\n    return names\n")
    capsys.readouterr()
    chat(shell, "tools")
    assert capsys.readouterr().out == ("session 'default' has no tools; add some with %%chat --tools f,g or "
                                       "%%chat --notebook\n")
    for line, message in (
            ("--tools nothing", "--tools: the notebook has no variable 'nothing' (nothing was sent)"),
            ("--tools forecast,number", "--tools: number is not a function (its type is int) (nothing was sent)"),
            ("--tools Point", "--tools: Point is a class, not a function (nothing was sent)"),
            ("--tools forecast.nope", "--tools: forecast has no attribute 'nope' (AttributeError) (nothing was sent)"),
            ("--tools varargs", "--tools: tool 'varargs' takes *names: a tool's parameters must be named ones, each "
                                "with a type, so the model knows what to send (nothing was sent)"),
            ("--tools 'f g'", "--tools: 'f g' is not a variable name; give names separated by commas, e.g. --tools "
                              "f,g (nothing was sent)"),
            ("--with nothing", "--with: the notebook has no variable 'nothing' (nothing was sent)")):
        with pytest.raises(UsageError) as caught:
            shell.run_cell_magic("chat", line, "hello")
        assert str(caught.value) == message
    assert loopback.requests == [] and len(current().sessions) == 1  # nothing sent, no session made
    assert len(current().session().tools) == 0
    loopback.queue(reply="Noted.")
    shell.run_cell_magic("chat", "--tools forecast,delete_file", "What tools do you have?")
    capsys.readouterr()
    chat(shell, "tools")
    assert capsys.readouterr().out == (
        "tool         description                    parameters                                               confirm\n"
        "forecast     The weather ahead for a city.  city: str, days: int = 3, unit: Literal['C', 'F'] = 'C'  no\n"
        "delete_file  Delete a file (asks first).    path: str                                                yes\n")
    sent = loopback.requests[-1].body
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["forecast", "delete_file"]
    chat(shell, "tools --clear")
    assert capsys.readouterr().out == "removed 2 tool(s) from session 'default'\n"
    assert len(current().session().tools) == 0
