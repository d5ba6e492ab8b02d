"""%%chat / %chat in a real kernel (nbclient) against the loopback server.

Kernels are slow to start, so each test runs one notebook that checks many things; replies are
scripted from this process (``loopback.queue``) in the order the notebook asks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from support.kernel_client import CleanKernel, clean_env
from support.kernel_notebook import ROOT, Run, run_cells
from support.loopback_client import chat_bodies

from jupyter_llmchat.notebook.commands import COMMAND_LIST, HELP

KEY = "sk-test-secret-key-0123456789abcdef"


class Cells:
    """Cell sources with names, so assertions read ``run.stdout(c["ask"])`` instead of indexes."""

    def __init__(self) -> None:
        self.sources: list[str] = []
        self.index: dict[str, int] = {}
        self.raises: set[int] = set()

    def add(self, name: str, source: str, *, raises: bool = False) -> int:
        """Add a cell; ``raises``: it is expected to fail (the notebook goes on)."""
        assert name not in self.index, name
        self.index[name] = len(self.sources)
        if raises:
            self.raises.add(self.index[name])
        self.sources.append(textwrap.dedent(source).strip("\n"))
        return self.index[name]

    def __getitem__(self, name: str) -> int:
        return self.index[name]

    def count(self, name: str) -> int:
        """The execution count the cell will get (every cell runs once, in order)."""
        return self.index[name] + 1


def answer(run: Run, index: int) -> str:
    """The answer a cell showed: its Markdown display, else its plain streamed text."""
    shown = run.displays(index, "text/markdown")
    return shown[0] if shown else run.stdout(index).rstrip("\n")


def last_user(body: dict) -> object:
    return body["messages"][-1]["content"]


def table(markdown: str) -> list[list[str]]:
    """The cells of a %chat Markdown table (header first, rule skipped), backslash escapes undone."""
    import re

    lines = markdown.splitlines()
    rows = [lines[0]] + [line for line in lines[2:] if line.startswith("|")]
    return [[re.sub(r"\\(.)", r"\1", cell).strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]
            for row in rows]


# -- the main tour: every %%chat option, expansion, sessions, history, --error, bad input ---------------
def test_chat_options_sessions_expansion_and_bad_input(loopback, tmp_path: Path) -> None:
    replies = ["Answer one", "Answer two", "Other session", "One-off", "Fresh start", '{"a": 1, "b": [1, 2]}',
               "Here you go:\n\n```python\nprint('hi')\n```\n\nEnjoy.", "Plain *text*", "Divided by zero.",
               "Line-magic explanation.", "Saw the images.", "Forty-two it is."]
    for reply in replies + ["sticky", "config wins now"]:
        loopback.queue(reply=reply)
    loopback.queue(fault="server_error")
    from PIL import Image

    Image.new("RGB", (40, 20), "blue").save(tmp_path / "blue sky.png")
    (tmp_path / "junk.json").write_text("{not json", encoding="utf-8")

    c = Cells()
    c.add("load", f"""
        %load_ext jupyter_llmchat
        %config ChatMagics.base_url = "{loopback.base_url}"
        %config ChatMagics.footer = False
        x = 42; name = "Ada"; data = {{"k": [1, 2]}}
        """)
    c.add("ask", """
        %%chat -m gpt-4o -t 0.5 --top-p 0.9 --seed 7 --max-tokens 50
        Hello {name}, what is {x + 1}? {data["k"]!r} {x:05d} {{literal}} {{ not_expanded }}
        """)
    c.add("chat_var", "print(repr(_chat))")
    c.add("system", """
        %%chat --system "Be terse."
        Second question
        """)
    c.add("other", """
        %%chat -s other
        Separate conversation
        """)
    c.add("oneoff", """
        %%chat --no-history
        A one-off question
        """)
    c.add("counts1", """
        from jupyter_llmchat.notebook.magics import current
        m = current()
        print({name: len(bot.conversation) for name, bot in m.sessions.items()})
        """)
    c.add("new", """
        %%chat --new -s other
        Fresh question
        """)
    c.add("json", """
        %%chat --json --no-history
        Give me JSON
        """)
    c.add("code", """
        %%chat -f code --no-history
        Write code
        """)
    c.add("text", """
        %%chat -f text --no-history
        Plain please
        """)
    c.add("boom", "result = 1 / 0", raises=True)
    c.add("why", """
        %%chat --error --no-history
        Why?
        """)
    c.add("why_line", "%chat --error --no-history")
    c.add("img_var", """
        from PIL import Image
        red = Image.new("RGB", (64, 32), "red")
        """)
    c.add("images", """
        %%chat -i red -i "blue sky.png" -i https://example.com/cat.png -s pics
        What colours?
        """)
    c.add("value", "21 * 2")
    c.add("inout", f"""
        %%chat --no-history
        Cell {{In[{c.count("value")}]!r}} gave {{Out[{c.count("value")}]}}
        """)
    # bad input: each is one line, nothing is sent, no conversation changes
    c.add("bad_name", "%%chat\nWhat about {undefined_thing}?", raises=True)
    c.add("bad_brace", "%%chat\nA lone } brace", raises=True)
    c.add("bad_expr", "%%chat\n{1/0}", raises=True)
    c.add("bad_temp", "%%chat -t 3\nhot", raises=True)
    c.add("bad_float", "%%chat -t warm\nhot", raises=True)
    c.add("bad_option", "%%chat --frobnicate\nx", raises=True)
    c.add("bad_image", "%%chat -i missing.png\nlook", raises=True)
    c.add("bad_image_new", "%%chat --new -i missing.png\nlook", raises=True)
    c.add("bad_image_session", "%%chat -s brand_new -i missing.png\nlook", raises=True)
    c.add("bad_combo", "%%chat --json -f code\nx", raises=True)
    c.add("bad_session", "%chat reset nosuch", raises=True)
    c.add("bad_command", "%chat frobnicate", raises=True)
    c.add("bad_load", "%chat load junk.json", raises=True)
    c.add("bad_missing", "%chat load nowhere.json", raises=True)
    c.add("bad_line_ask", "%chat -m gpt-4o", raises=True)
    c.add("counts2", "print({name: len(bot.conversation) for name, bot in m.sessions.items()})")
    c.add("history", "%chat history pics")
    c.add("sessions", "%chat sessions")
    c.add("usage", "%chat usage")
    c.add("save", "%chat save saved.json -s pics")
    c.add("help", "%%chat?")
    c.add("line_help", "%chat?")
    c.add("bare", "%chat")
    # a change made to a session directly sticks until that setting itself changes
    c.add("direct", 'm.sessions.get("other").params["temperature"] = 1.1')
    c.add("q_direct", "%%chat -s other --no-history\nsticky")
    c.add("set_config", "%config ChatMagics.temperature = 0.4")
    c.add("q_config", "%%chat -s other --no-history\nconfig wins now")
    # a request that fails: one line, conversation untouched
    c.add("retries", "%config ChatMagics.max_retries = 0")
    c.add("fail", "%%chat\nthis fails", raises=True)
    c.add("counts3", "print({name: len(bot.conversation) for name, bot in m.sessions.items()}, repr(_chat))")
    c.add("panel", "%chat panel pics")
    run = run_cells(c.sources, raises=c.raises, cwd=tmp_path)
    bodies = chat_bodies(loopback)
    assert len(bodies) == 15  # one request per good ask and the failing one; none for the bad input

    # options reach the request exactly; {} expansion follows f-string rules; {{ }} are literal
    assert answer(run, c["ask"]) == "Answer one"
    first = bodies[0]
    assert (first["model"], first["temperature"], first["top_p"], first["seed"], first["max_tokens"]) == \
        ("gpt-4o", 0.5, 0.9, 7, 50)
    assert first["messages"] == [{"role": "user", "content":
                                  "Hello Ada, what is 43? [1, 2] 00042 {literal} { not_expanded }"}]
    assert run.stdout(c["chat_var"]) == "'Answer one'\n"

    # --system for one question, with the history before it; later questions drop it again
    assert bodies[1]["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": first["messages"][0]["content"]},
        {"role": "assistant", "content": "Answer one"},
        {"role": "user", "content": "Second question"}]
    assert bodies[1]["model"] == "gpt-4o-mini" and "temperature" not in bodies[1]
    # sessions are kept apart; --no-history neither reads nor writes
    assert bodies[2]["messages"] == [{"role": "user", "content": "Separate conversation"}]
    assert bodies[3]["messages"] == [{"role": "user", "content": "A one-off question"}]
    assert run.stdout(c["counts1"]) == "{'default': 4, 'other': 2}\n"
    # --new starts the session afresh
    assert bodies[4]["messages"] == [{"role": "user", "content": "Fresh question"}]

    # --json: JSON mode requested, the answer shown as indented JSON
    assert bodies[5]["response_format"] == {"type": "json_object"}
    pretty = json.dumps({"a": 1, "b": [1, 2]}, indent=2)
    assert run.displays(c["json"]) == [f"```json\n{pretty}\n```"]
    assert run.displays(c["json"], "text/plain") == [pretty]
    # -f code: the code block shown as code and put into the next cell
    assert run.displays(c["code"]) == ["```python\nprint('hi')\n```"]
    assert [p for p in run.payloads[c["code"]] if p["source"] == "set_next_input"] == [
        {"source": "set_next_input", "text": "print('hi')", "replace": False}]
    # -f text: plain streamed text, exactly the answer
    assert run.stdout(c["text"]) == "Plain *text*\n"

    # --error appends the failing cell and its traceback (no IPython frames, no colour codes)
    boom = c.count("boom")
    expected_error = (
        f"Why?\n\nThe code that failed (In[{boom}]):\n\n```python\nresult = 1 / 0\n```\n\n"
        f"The error:\n\n```pytb\nTraceback (most recent call last):\n  Cell In[{boom}], line 1, in <module>\n"
        "    result = 1 / 0\nZeroDivisionError: division by zero\n```")
    assert last_user(bodies[8]) == expected_error
    assert last_user(bodies[9]) == expected_error.replace("Why?", "Why did this fail, and how do I fix it?")
    assert answer(run, c["why_line"]) == "Line-magic explanation."

    # images: a variable and a path, as data URLs after the question text
    parts = last_user(bodies[10])
    assert parts[0] == {"type": "text", "text": "What colours?"}
    assert [p["type"] for p in parts[1:]] == ["image_url"] * 3
    assert all(p["image_url"]["url"].startswith("data:image/png;base64,") for p in parts[1:3])
    assert parts[3]["image_url"]["url"] == "https://example.com/cat.png"  # a URL is passed on, not fetched
    # In[n] / Out[n]
    assert last_user(bodies[11]) == "Cell '21 * 2' gave 42"

    # bad input: one line each, saying what is wrong and how to fix it
    assert run.error_line(c["bad_name"]) == (
        "ExpansionError: {undefined_thing} at line 1, column 12: name 'undefined_thing' is not defined; "
        "define it in a cell first, or write {{ and }} for literal braces, or use %%chat --raw "
        "(nothing was sent)")
    assert run.error_line(c["bad_brace"]) == (
        "ExpansionError: single '}' at line 1, column 8; write {{ and }} for literal braces, or use "
        "%%chat --raw (nothing was sent)")
    assert run.error_line(c["bad_expr"]) == (
        "ExpansionError: {1/0} at line 1, column 1 failed: ZeroDivisionError: division by zero "
        "(nothing was sent)")
    assert run.error_line(c["bad_temp"]) == "UsageError: --temperature must be between 0 and 2, got 3.0"
    assert run.error_line(c["bad_float"]) == (
        "UsageError: argument -t/--temperature: invalid float value: 'warm'; %%chat? lists the options "
        "(nothing was sent)")
    assert run.error_line(c["bad_option"]) == (
        "UsageError: unrecognized arguments: --frobnicate; %%chat? lists the options (nothing was sent)")
    assert run.error_line(c["bad_image"]).startswith("ImageError: ")
    assert "missing.png" in run.error_line(c["bad_image"])
    assert run.error_line(c["bad_image"]).endswith("(nothing was sent)")
    assert run.error_line(c["bad_image_new"]) == run.error_line(c["bad_image"])
    assert run.error_line(c["bad_image_session"]) == run.error_line(c["bad_image"])  # and no session made
    assert run.error_line(c["bad_combo"]) == "UsageError: --json shows the answer as JSON; drop -f code or --json"
    assert run.error_line(c["bad_session"]) == (
        "UsageError: unknown session 'nosuch' (sessions: default, other, pics); start it by asking with "
        "-s nosuch")
    assert run.error_line(c["bad_command"]).startswith("UsageError: unknown %chat command 'frobnicate'; ")
    assert run.error_line(c["bad_load"]) == (
        "TranscriptError: 'junk.json' is not a transcript: invalid JSON at line 1 "
        "(Expecting property name enclosed in double quotes)")
    assert run.error_line(c["bad_missing"]) == (
        "TranscriptError: no transcript at 'nowhere.json': check the path (%chat save PATH writes one)")
    assert run.error_line(c["bad_line_ask"]).startswith("UsageError: to ask a question use the cell magic")
    for name in c.index:
        if name.startswith("bad_"):
            assert run.status(c[name]) == "error", name
    # ... and nothing changed: same conversations as before the bad cells
    assert run.stdout(c["counts2"]) == "{'default': 4, 'other': 2, 'pics': 2}\n"

    # %chat history: the transcript as Markdown, image thumbnails in it
    history = run.displays(c["history"])[0]
    assert history.startswith("**model:** `gpt-4o-mini` · **messages:** 2\n\n### user\n\nWhat colours?")
    assert history.count("<img ") == 3 and "### assistant · gpt-4o-mini\n\nSaw the images." in history
    plain_history = run.displays(c["history"], "text/plain")[0]
    assert "[image: blue sky.png 40x20]" in plain_history  # -i "blue sky.png": quotes parsed as a shell does
    # %chat sessions / usage tables
    sessions = run.displays(c["sessions"])[0].splitlines()
    assert sessions[0] == "| session | model | messages | history tokens | system |"
    assert [row[:3] for row in table(run.displays(c["sessions"])[0])[1:]] == [
        ["default", "gpt-4o-mini", "4"], ["other", "gpt-4o-mini", "2"], ["pics", "gpt-4o-mini", "2"]]
    usage = run.displays(c["usage"])[0].splitlines()
    assert usage[:2] == ["| session | model | requests | from cache | prompt tokens | cached tokens | "
                         "completion tokens | cost |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    requests = {tuple(row[:3]) for row in table(run.displays(c["usage"])[0])[1:]}
    assert requests == {("default", "gpt-4o", "1"), ("default", "gpt-4o-mini", "8"), ("other", "gpt-4o-mini", "2"),
                        ("pics", "gpt-4o-mini", "1"), ("total", "", "12")}
    # %chat save writes the transcript with the images inside
    saved = json.loads((tmp_path / "saved.json").read_text(encoding="utf-8"))
    assert saved["format"] == "jupyter_llmchat.transcript" and saved["model"] == "gpt-4o-mini"
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]
    assert len(saved["messages"][0]["images"]) == 3
    assert saved["messages"][0]["images"][0]["url"].startswith("data:image/")
    # %%chat? shows the argument help; bare %chat lists the commands
    page = "".join(p["data"]["text/plain"] for p in run.payloads[c["help"]] if p["source"] == "page")
    for option in ("--no-history", "--image SOURCE", "--session NAME", "--json", "--format FORMAT", "--error"):
        assert option in page
    assert "usage: %%chat [-m MODEL] [-t TEMPERATURE]" in page  # the cell magic's own name, plain text:
    assert "::" not in page and "``" not in page and "<" not in page  # no reST
    line_page = "".join(p["data"]["text/plain"] for p in run.payloads[c["line_help"]] if p["source"] == "page")
    assert HELP in line_page  # %chat? documents every command with its arguments
    assert "usage: %chat reset [--all] [SESSION]\n" in line_page and "::" not in line_page
    assert run.stdout(c["bare"]) == COMMAND_LIST + "\n"

    assert [b.get("temperature") for b in bodies[12:14]] == [1.1, 0.4]
    assert run.error_line(c["fail"]).startswith(
        f"ServerError: server error (500) at {loopback.base_url}: ")
    assert run.error_line(c["fail"]).endswith("; try again later") and "\n" not in run.error_line(c["fail"])
    assert run.stdout(c["counts3"]) == "{'default': 4, 'other': 2, 'pics': 2} 'config wins now'\n"
    widget = [o for o in run.outputs(c["panel"]) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widget) == 1


# -- configuration precedence, the key kept hidden, and a transcript carried to a new kernel -------------
def test_config_precedence_key_hidden_and_transcript_round_trip(loopback, tmp_path: Path) -> None:
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_kernel_config.py").write_text(
        'c.ChatMagics.model = "gpt-4"\nc.ChatMagics.system = "From the config file."\n', encoding="utf-8")
    env = {"IPYTHONDIR": str(tmp_path / "ipython"), "LLMCHAT_MODEL": "gpt-4.1-mini", "OPENAI_API_KEY": KEY,
           "OPENAI_BASE_URL": loopback.base_url}
    for reply in ("r1", "r2", "r3", "r4", "r5"):
        loopback.queue(reply=reply)

    c = Cells()
    c.add("load", """
        %load_ext jupyter_llmchat
        %config ChatMagics.model = "gpt-3.5-turbo"
        %config ChatMagics.temperature = 0.3
        """)
    c.add("q1", "%%chat\nfirst")
    c.add("config", "%chat config")
    c.add("q2", "%%chat -m gpt-4.1-nano -t 0.9\nsecond")
    c.add("set_model", "%chat model gpt-4.1")
    c.add("bad_config", "%config ChatMagics.temperature = 5")
    c.add("q3", "%%chat\nthird")
    c.add("show_model", "%chat model")
    c.add("clear_system", '%chat system ""\n%chat system')
    c.add("env_bad", 'import os\nos.environ["LLMCHAT_MAX_TOKENS"] = "lots"')
    c.add("q_env_bad", "%%chat\nnot sent", raises=True)
    c.add("env_range", 'os.environ["LLMCHAT_MAX_TOKENS"] = "0"')
    c.add("q_env_range", "%%chat\nnot sent", raises=True)
    c.add("env_ok", 'os.environ["LLMCHAT_MAX_TOKENS"] = "50"\nos.environ["LLMCHAT_TEMPERATURE"] = "1.5"')
    c.add("q4", "%%chat\nfourth")
    c.add("reprs", """
        from jupyter_llmchat.notebook.magics import current
        m = current()
        print(repr(m), repr(m.client()), repr(m.sessions.get()))
        """)
    c.add("history", "%chat history")
    c.add("save", "%chat save transcript.json")
    c.add("azure", f"""
        %config ChatMagics.azure_endpoint = "{loopback.root_url}"
        %config ChatMagics.api_version = "2024-10-21"
        %config ChatMagics.azure_deployment = "gpt-4o"
        os.environ["AZURE_OPENAI_API_KEY"] = "azure-test-key-000"
        """)
    c.add("q_azure", "%%chat --no-history\nvia azure")
    run = run_cells(c.sources, raises=c.raises, env=env, cwd=tmp_path)
    bodies = chat_bodies(loopback)

    # defaults < environment < %config / ipython_kernel_config.py < %chat model < cell options
    assert [(b["model"], b.get("temperature"), b.get("max_tokens")) for b in bodies[:4]] == [
        ("gpt-3.5-turbo", 0.3, None), ("gpt-4.1-nano", 0.9, None), ("gpt-4.1", 0.3, None),
        ("gpt-4.1", 0.3, 50)]  # LLMCHAT_TEMPERATURE=1.5 loses to %config; LLMCHAT_MAX_TOKENS counts
    assert bodies[0]["messages"][0] == {"role": "system", "content": "From the config file."}
    shown = run.displays(c["q1"])  # footer on by default: the answer, then a separate small footer
    assert shown[0] == "r1" and shown[1].startswith("<sub>gpt-3.5-turbo · ") and "out tokens" in shown[1]
    assert bodies[3]["messages"][0]["role"] == "user"  # %chat system "" cleared it
    rows = {row[0]: row for row in table(run.displays(c["config"])[0])[1:]}
    assert rows["model"] == ["model", "'gpt-3.5-turbo'", "%config / config file", "LLMCHAT_MODEL"]
    assert rows["temperature"] == ["temperature", "0.3", "%config / config file", "LLMCHAT_TEMPERATURE"]
    assert rows["system"] == ["system", "'From the config file.'", "%config / config file", "LLMCHAT_SYSTEM"]
    assert rows["max_tokens"] == ["max_tokens", "None", "default", "LLMCHAT_MAX_TOKENS"]
    assert rows["api_key"] == ["api_key", "set (hidden)", "env OPENAI_API_KEY", "OPENAI_API_KEY"]
    assert rows["base_url"][2] == "env OPENAI_BASE_URL" and rows["endpoint"][1] == loopback.base_url
    assert "should not be greater than 2.0" in run.stderr(c["bad_config"])  # %config refuses, keeps 0.3
    assert run.stdout(c["set_model"]) == "model for all sessions: 'gpt-4.1'\n"
    assert run.stdout(c["show_model"]) == "gpt-4.1\n"
    assert run.stdout(c["clear_system"]) == "system cleared for all sessions\n(no system message)\n"
    assert run.error_line(c["q_env_bad"]) == (
        "UsageError: environment variable LLMCHAT_MAX_TOKENS='lots' is not a valid max_tokens: fix or unset it")
    assert run.error_line(c["q_env_range"]) == (
        "UsageError: environment variable LLMCHAT_MAX_TOKENS must be at least 1, got 0")
    assert len(bodies) == 5
    # Azure OpenAI: the deployment path and api-version, the Azure key (not OPENAI_API_KEY)
    azure = [r for r in loopback.requests if r.path.startswith("/openai/")]
    assert len(azure) == 1 and azure[0].path.startswith("/openai/deployments/gpt-4o/chat/completions")
    assert azure[0].query == "api-version=2024-10-21" and answer(run, c["q_azure"]) == "r5"
    # the key reached the server, and nothing else: no output, repr or transcript shows it
    assert KEY not in run.all_text()
    assert KEY not in (tmp_path / "transcript.json").read_text(encoding="utf-8")
    assert run.stdout(c["reprs"]).count(f"ChatClient(base_url='{loopback.base_url}', key_source='api_key=')") == 2

    # a new kernel, with no key and no base URL: the transcript loads, the offline demo answers
    d = Cells()
    d.add("load", "%load_ext jupyter_llmchat\n%chat load transcript.json")
    d.add("history", "%chat history")
    d.add("ask", "%%chat\nfifth")
    d.add("sent", """
        from jupyter_llmchat.server import start_demo_server
        body = start_demo_server().requests[-1].body
        print([m["content"] for m in body["messages"]], body["model"])
        """)
    d.add("again", "%%chat --no-history\nsixth")
    d.add("unload", "%unload_ext jupyter_llmchat\nprint('_chat' in globals())")
    d.add("gone", "%chat", raises=True)
    d.add("reload", "%load_ext jupyter_llmchat\n%chat sessions")
    d.add("config_help", "%config ChatMagics")
    drop = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT",
            *[k for k in os.environ if k.startswith("LLMCHAT_")])
    again = run_cells(d.sources, raises=d.raises, cwd=tmp_path, drop_env=drop,
                      env={"IPYTHONDIR": str(tmp_path / "empty-ipython")})
    assert again.stdout(d["load"]) == "loaded 8 messages into session 'default' (model gpt-4.1)\n"
    assert again.displays(d["history"]) == run.displays(c["history"])
    notice = again.stdout(d["ask"]).splitlines()[0]
    assert notice.startswith("Offline demo: no API key or base URL is set, so answers come from the built-in "
                             "demo server at http://127.0.0.1:")
    assert notice.endswith("not from a model. Set OPENAI_API_KEY (or OPENAI_BASE_URL for a local server) "
                           "to talk to a real model.")
    assert again.stdout(d["sent"]) == (
        "['first', 'r1', 'second', 'r2', 'third', 'r3', 'fourth', 'r4', 'fifth'] gpt-4.1\n")
    assert "Offline demo" not in again.stdout(d["again"])  # said once
    assert again.stdout(d["unload"]) == "False\n"
    assert again.error_line(d["gone"]) == "UsageError: Line magic function `%chat` not found."
    reloaded = again.displays(d["reload"])[0].splitlines()
    assert reloaded[2].startswith("| default | gpt-4o-mini | 0 | 0 |")  # unloading dropped the sessions
    assert "ChatMagics.temperature=<Float>" in again.stdout(d["config_help"])


# -- the key set in the notebook: never shown by anything, yet it reaches the endpoint ---------------------
def test_a_key_set_with_config_never_shows_and_beats_the_inherited_one(tmp_path: Path) -> None:
    import nbformat

    from jupyter_llmchat.server import LoopbackServer

    with LoopbackServer(api_key=KEY) as guarded, LoopbackServer(model_list=False) as unlisted:
        guarded.queue(reply="the key worked")
        c = Cells()
        # The kernel inherits a stale key and model; the notebook sets the real key (read from a variable,
        # so the cell's source holds no key) and a model: what the notebook says wins.
        c.add("load", f"""
            %load_ext jupyter_llmchat
            %config ChatMagics.base_url = "{guarded.base_url}"
            %config ChatMagics.footer = False
            %config ChatMagics.max_retries = 0
            """)
        c.add("stale", "%%chat --no-history\nsent with the inherited key", raises=True)
        c.add("set_key", 'import os\n%config ChatMagics.api_key = os.environ["TEST_SECRET"]\n'
                         '%config ChatMagics.model = "gpt-4o"')
        c.add("ask", "%%chat\nsent with the notebook's key")
        c.add("config_class", "%config ChatMagics")
        c.add("config_value", "%config ChatMagics.api_key")
        c.add("help", "from jupyter_llmchat.notebook.magics import ChatMagics, current\n"
                      "print(ChatMagics.class_get_help(current()))")
        c.add("chat_config", "%chat config")
        c.add("reprs", "m = current()\n"
                       "print(repr(m), repr(m.api_key), m.trait_values(), m.setting('api_key'), m.config)\n"
                       "print(get_ipython().config, [c.config for c in get_ipython().configurables])")
        c.add("value_out", "m.api_key")
        c.add("unlisted", f'%config ChatMagics.base_url = "{unlisted.base_url}"\n%chat models', raises=True)
        run = run_cells(c.sources, raises=c.raises, cwd=tmp_path,
                        env={"OPENAI_API_KEY": "sk-stale-inherited-0000", "LLMCHAT_MODEL": "gpt-4.1-mini",
                             "TEST_SECRET": KEY, "IPYTHONDIR": str(tmp_path / "ipython")})
        served = [r for r in guarded.requests if r.path.endswith("/chat/completions")]
        unlisted_url = unlisted.base_url
    # the inherited key was refused; the notebook's reached the endpoint (it answers only that key)
    assert run.error_line(c["stale"]).startswith("AuthenticationError: ")
    assert [r.status for r in served] == [401, 200] and answer(run, c["ask"]) == "the key worked"
    assert served[1].body["model"] == "gpt-4o" and served[1].headers["authorization"] == "Bearer ***"
    # nothing shows it: %config ChatMagics, %config ChatMagics.api_key, help, %chat config, reprs, configs
    assert "ChatMagics.api_key=<SecretUnicode>\n" in run.stdout(c["config_class"])
    assert "    Current: <api key hidden>\n" in run.stdout(c["config_class"])
    assert run.displays(c["config_value"], "text/plain") == ["<api key hidden>"]
    assert run.displays(c["value_out"], "text/plain") == ["<api key hidden>"]
    assert "    Current: <api key hidden>\n" in run.stdout(c["help"])
    rows = {row[0]: row for row in table(run.displays(c["chat_config"])[0])[1:]}
    assert rows["api_key"] == ["api_key", "set (hidden)", "%config / config file", "OPENAI_API_KEY"]
    assert rows["model"] == ["model", "'gpt-4o'", "%config / config file", "LLMCHAT_MODEL"]
    assert run.stdout(c["reprs"]).count("<api key hidden>") >= 5
    notebook = nbformat.writes(run.nb)  # what would be saved
    assert KEY not in notebook and KEY[3:] not in notebook and "sk-stale" not in notebook
    # %chat models against a server without GET /v1/models: its one line, no traceback
    assert run.error_line(c["unlisted"]) == (
        f"BadRequestError: {unlisted_url} does not list its models (GET /models answered 404): ask with the "
        "model name its documentation gives")


# -- terminal IPython: plain streamed text, no display machinery -----------------------------------------
def test_terminal_ipython_plain_text(loopback, tmp_path: Path) -> None:
    loopback.queue(reply="Hello from **the** terminal")
    loopback.queue(reply="Sure:\n```python\nprint(2)\n```")
    loopback.queue(reply='{"a": 1}')
    cells = ["%load_ext jupyter_llmchat", "%config ChatMagics.footer = False", "%%chat\nhi there",
             "%%chat -f code\ncode please", "%%chat --json\njson please",
             "print(type(get_ipython()).__name__, repr(_chat))"]
    code = "\n".join(f"get_ipython().run_cell({cell!r})" for cell in cells) + "\nNone"
    env = clean_env(tmp_path, OPENAI_BASE_URL=loopback.base_url)
    done = subprocess.run([sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor", "-c", code],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.stderr == ""
    assert done.stdout == ('Hello from **the** terminal\nprint(2)\n{\n  "a": 1\n}\n'
                           'TerminalInteractiveShell \'{"a": 1}\'\n')
    assert "\x1b" not in done.stdout


# -- the quickstart notebook runs offline, top to bottom ----------------------------------------------
def test_quickstart_notebook_runs_offline(tmp_path: Path) -> None:
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    raises = {i for i, cell in enumerate(code) if "raises-exception" in cell.metadata.get("tags", [])}
    drop = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT",
            *[k for k in os.environ if k.startswith("LLMCHAT_")])
    data = tmp_path / "data"
    run = run_cells([cell.source for cell in code], raises=raises, drop_env=(*drop, "JUPYTER_LLMCHAT_STORE"),
                    cwd=tmp_path, env={"IPYTHONDIR": str(tmp_path / "ipython"), "MPLBACKEND": "Agg",
                                       "XDG_DATA_HOME": str(data)})
    assert [i for i in range(len(code)) if run.replies[i]["status"] != "ok"] == sorted(raises)
    asks = [i for i, cell in enumerate(code) if cell.source.startswith("%%chat")]
    assert len(asks) == 8
    opening = "This reply comes from the jupyter_llmchat offline demo server, not from a model"
    for i in asks:
        if "--json" in code[i].source:
            assert '"source": "jupyter_llmchat offline demo server, not a model"' in run.displays(i)[0]
        elif "-f text" in code[i].source:
            assert run.stdout(i).startswith(opening)
        elif "-f code" in code[i].source:  # the demo reply's code block, shown as code and put in a new cell
            assert run.displays(i)[0].startswith("```python\n"), code[i].source
            assert [p["text"] for p in run.payloads[i] if p.get("source") == "set_next_input"]
        else:
            assert run.displays(i)[0].startswith(opening), code[i].source
    assert sum(run.stdout(i).count("Offline demo: no API key") for i in range(len(code))) == 1
    expanded = next(i for i in asks if "{readings}" in code[i].source)
    assert "The readings are [3.1, 2.7, 4.4, 3.9]; their mean is 3.53." in run.displays(expanded)[0]
    history = next(i for i, cell in enumerate(code) if cell.source == "%chat history charts")
    assert run.displays(history)[0].count("<img ") == 1
    # no model wrote the demo's answers: no price anywhere, and they went to the demo's own store
    # a footer is its own output, or (an answer streamed in pieces, then made one output) its last paragraph
    footers = [last for i in asks for shown in run.displays(i) if (last := shown.rsplit("\n\n", 1)[-1]).startswith("<sub>")]
    assert len(footers) >= 5 and all(f.endswith(" · demo, no cost</sub>") for f in footers), footers
    usage = next(i for i, cell in enumerate(code) if cell.source == "%chat usage")
    assert [row[-1] for row in table(run.displays(usage)[0])[1:]] == ["demo, no cost"] * 4
    assert "$" not in json.dumps([run.displays(i) for i in asks + [usage]])
    saved = next(i for i, cell in enumerate(code) if cell.source == "%chat saved")
    assert {row[0] for row in table(run.displays(saved)[0])[1:]} == {"default", "reviewer", "charts", "restored"}
    assert sorted(path.name for path in (data / "jupyter_llmchat").iterdir()) == ["demo.sqlite3"]


# -- interrupting the kernel mid-answer keeps the partial answer, marked, and the cell succeeds ---------
def test_kernel_interrupt_keeps_partial_answer(loopback, tmp_path: Path) -> None:
    with CleanKernel(tmp_path) as kernel:
        reply, _ = kernel.execute(f'%load_ext jupyter_llmchat\n%config ChatMagics.base_url = "{loopback.base_url}"')
        assert reply["status"] == "ok"
        loopback.queue(tokens=3000, rate=30.0)  # about 100 s in full: the interrupt comes long before
        reply, outputs = kernel.execute("%%chat\nTell me a long story", interrupt_at_update=1)
        assert reply["status"] == "ok"  # an interrupt is not an error: the partial answer is the result
        shown = json.dumps(outputs)
        assert "answer interrupted: partial text kept" in shown
        reply, outputs = kernel.execute(
            "from jupyter_llmchat.notebook.magics import current\n"
            "bot = current().sessions.get()\n"
            "print([(m.role, m.status) for m in bot.conversation.messages], "
            "0 < len(_chat) < 3000, _chat == bot.conversation.messages[-1].text)")
        expected = "[('user', 'complete'), ('assistant', 'interrupted')] True True\n"
        assert outputs == [{"name": "stdout", "text": expected}], outputs


# -- the SQLite store: a session and its usage outlive the kernel; the response cache replays ------------
def test_store_restores_sessions_and_usage_across_kernels(loopback, tmp_path: Path) -> None:
    for reply in ("one", "two", "three", "cached answer"):
        loopback.queue(reply=reply)
    db = tmp_path / "chat.sqlite3"
    setup = f'%load_ext jupyter_llmchat\n%config ChatMagics.base_url = "{loopback.base_url}"\n' \
            f'%config ChatMagics.store = "{db}"\n%config ChatMagics.footer = False'
    env = {"IPYTHONDIR": str(tmp_path / "ipython")}
    c = Cells()
    c.add("load", setup)
    c.add("q1", "%%chat -s proj\nfirst")
    c.add("q2", "%%chat -s proj\nsecond")
    first = run_cells(c.sources, env=env, cwd=tmp_path)
    assert answer(first, c["q2"]) == "two"

    d = Cells()
    d.add("load", setup + "\n%config ChatMagics.cache = True")
    d.add("saved", "%chat saved")
    d.add("restore", "%chat restore proj")
    d.add("q3", "%%chat -s proj\nthird")
    d.add("c1", "%%chat --no-history -t 0\nsame question")
    d.add("c2", "%%chat --no-history -t 0\nsame question")
    d.add("usage", "%chat usage")
    d.add("no_store", "%config ChatMagics.store = None\n%chat saved", raises=True)
    second = run_cells(d.sources, raises=d.raises, env=env, cwd=tmp_path)
    assert table(second.displays(d["saved"])[0])[1][:3] == ["proj", "gpt-4o-mini", "4"]
    assert second.stdout(d["restore"]) == ("restored 4 messages of saved session 'proj' into session 'proj' "
                                           "(model gpt-4o-mini); recording continues\n")
    bodies = chat_bodies(loopback)
    assert [m["content"] for m in bodies[2]["messages"]] == ["first", "one", "second", "two", "third"]
    assert len(bodies) == 4  # the repeated question was answered from the cache
    assert answer(second, d["c2"]) == answer(second, d["c1"]) == "cached answer"
    rows = {tuple(row[:3]) for row in table(second.displays(d["usage"])[0])[1:]}
    # both kernels' replies, from the store's ledger (the cache hit counts as a request that cost nothing)
    assert rows == {("proj", "gpt-4o-mini", "3"), ("default", "gpt-4o-mini", "2"), ("total", "", "5")}
    assert second.error_line(d["no_store"]) == (
        "UsageError: %chat saved needs a store file, and this kernel keeps conversations in memory only: "
        "%config ChatMagics.store = 'default' (or a file path), or set JUPYTER_LLMCHAT_STORE")


# -- a store in trouble: damaged pages, a read-only file ------------------------------------------------
def test_a_damaged_store_warns_once_while_chatting_and_saved_says_one_line(loopback, tmp_path: Path) -> None:
    from support.damaged_store import damage_pages, filled_store

    path = filled_store(tmp_path / "chat.sqlite3")
    damage_pages(path)
    for reply in ("one", "two", "three"):
        loopback.queue(reply=reply)
    c = Cells()
    c.add("load", f'%load_ext jupyter_llmchat\n%config ChatMagics.base_url = "{loopback.base_url}"\n'
                  f'%config ChatMagics.store = "{path}"\n%config ChatMagics.footer = False')
    for n in (1, 2, 3):
        c.add(f"q{n}", f"%%chat\nquestion {n}")
    c.add("saved", "%chat saved", raises=True)
    c.add("usage", "%chat usage", raises=True)
    c.add("kept", "from jupyter_llmchat.notebook.magics import current\n"
                  "print([m.text for m in current().sessions.get().history])")
    run = run_cells(c.sources, raises=c.raises, cwd=tmp_path, env={"IPYTHONDIR": str(tmp_path / "ipython")})
    assert [answer(run, c[f"q{n}"]) for n in (1, 2, 3)] == ["one", "two", "three"]  # the chat goes on
    assert run.stdout(c["kept"]) == "['question 1', 'one', 'question 2', 'two', 'question 3', 'three']\n"
    warned = [run.stderr(c[f"q{n}"]) for n in (1, 2, 3)]
    assert warned[0].count("StoreWarning") == 1 and warned[1:] == ["", ""]
    assert (f"StoreWarning: the store {path} could not save a message of session 'default' (DatabaseError: "
            "database disk image is malformed); the conversation continues in memory, unsaved") in warned[0]
    damaged = (f"StoreError: cannot read the store {path} (DatabaseError: database disk image is malformed); the "
               "file is damaged: move it away (a new store is made in its place) or pass another path")
    assert run.error_line(c["saved"]) == run.error_line(c["usage"]) == damaged


def test_a_read_only_store_warns_once_in_ipython(loopback, tmp_path: Path) -> None:
    from support.damaged_store import filled_store, permission_bound

    path = filled_store(tmp_path / "chat.sqlite3", sessions=1)
    path.chmod(0o444)  # read-only, and readable by others: one warning says both
    loopback.queue(reply="first", times=1)
    loopback.queue(reply="second", times=1)
    cells = ["%load_ext jupyter_llmchat", f"%config ChatMagics.store = '{path}'", "%config ChatMagics.footer = False",
             "%config ChatMagics.format = 'text'", "%%chat\nhello", "%%chat\nagain", "%chat saved"]
    code = "\n".join(f"get_ipython().run_cell({cell!r})" for cell in cells) + "\nNone"
    env = clean_env(tmp_path, OPENAI_BASE_URL=loopback.base_url)
    done = subprocess.run([*permission_bound(), sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor",
                           "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.stderr.count("StoreWarning") == 1, done.stderr
    assert (f"StoreWarning: the store {path} is read-only: what is said from now on is not saved to it (conversations "
            "stay in memory); make it writable or choose another store; the store") in done.stderr
    assert done.stdout.startswith("first\nsecond\n") and "s0" in done.stdout  # answers, then the saved sessions


# -- %unload_ext and interpreter exit stop what the magics started ---------------------------------------
THREADS_AND_FILES = """
import os, threading
def ours():
    names = sorted(t.name for t in threading.enumerate() if t.name.startswith(("llmchat-", "loopback-server")))
    open_files = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            open_files.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return names, sorted(name for name in open_files if ".sqlite3" in name)
"""


def test_unload_stops_every_thread_and_closes_the_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    demo_store = data / "jupyter_llmchat" / "demo.sqlite3"
    c = Cells()
    c.add("load", "%load_ext jupyter_llmchat\n%config ChatMagics.footer = False\n" + THREADS_AND_FILES)
    c.add("ask", "%%chat\nhello")
    c.add("panel", "%chat panel")
    c.add("panel_ready", "from jupyter_llmchat.notebook.magics import current\n"
                         "m = current()\nm.panels[0].models_ready.wait(60)\nprint(m.opened_store().path)")
    c.add("before", "names, store = ours()\nprint(names[-1].startswith('loopback-server-'), store, "
                    "os.path.exists(store[0] + '-wal'))")
    c.add("unload", "%unload_ext jupyter_llmchat")
    c.add("after", "print(ours(), os.path.exists(store[0] + '-wal'))")
    drop = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", "JUPYTER_LLMCHAT_STORE")
    run = run_cells(c.sources, cwd=tmp_path, drop_env=drop,
                    env={"XDG_DATA_HOME": str(data), "IPYTHONDIR": str(tmp_path / "ipython")})
    # the offline demo answered, into a store of its own: the user's default store was never made
    assert run.stdout(c["panel_ready"]) == f"{demo_store}\n"
    assert sorted(p.name for p in demo_store.parent.iterdir() if not p.name.startswith("demo.sqlite3")) == []
    files = [f"{demo_store}", f"{demo_store}-shm", f"{demo_store}-wal"]
    assert run.stdout(c["before"]) == f"True {files} True\n"  # the demo server runs, the store is open
    assert run.stdout(c["after"]) == "([], []) False\n"  # no thread of ours, the store closed and checkpointed


ATEXIT_REPORT = THREADS_AND_FILES + """
import atexit
def report():  # registered before %load_ext: runs after the magics' own atexit handler
    print("at exit:", ours(), flush=True)
atexit.register(report)
"""


def test_interpreter_exit_stops_every_thread_and_closes_the_store(tmp_path: Path) -> None:
    cells = [ATEXIT_REPORT, "%load_ext jupyter_llmchat", "%config ChatMagics.footer = False",
             "%config ChatMagics.format = 'text'", f"%config ChatMagics.store = '{tmp_path / 'chat.sqlite3'}'",
             "%%chat\nhello", "print('before exit:', ours()[1])"]
    code = "\n".join(f"get_ipython().run_cell({cell!r})" for cell in cells) + "\nNone"
    env = clean_env(tmp_path)
    done = subprocess.run([sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor", "-c", code],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    store = tmp_path / "chat.sqlite3"
    assert f"before exit: {[str(store), f'{store}-shm', f'{store}-wal']}" in lines  # the demo answered into it
    assert lines[-1] == "at exit: ([], [])"
    assert not (tmp_path / "chat.sqlite3-wal").exists()


# -- tools: --notebook, --tools and --with in a real kernel, the calls scripted on the loopback server ----
def test_notebook_tools_function_tools_and_with_summaries(loopback, tmp_path: Path) -> None:
    loopback.queue(tool_calls=[{"name": "list_variables", "arguments": {}},
                               {"name": "inspect_variable", "arguments": {"name": "arr"}}])
    loopback.queue(reply="You have an array.")
    loopback.queue(tool_calls=[{"name": "forecast", "arguments": {"city": "Oslo"}}])
    loopback.queue(reply="Sunny in Oslo.")
    loopback.queue(tool_calls=[{"name": "run_python", "arguments": {"code": "total = n * 2\nprint(total)\ntotal"}}])
    loopback.queue(reply="It printed 84.")
    c = Cells()
    c.add("load", f"""
        %load_ext jupyter_llmchat
        %config ChatMagics.base_url = "{loopback.base_url}"
        %config ChatMagics.footer = False
        """)
    c.add("data", """
        import numpy as np
        arr = np.arange(6).reshape(2, 3)
        n = 42
        def forecast(city: str) -> str:
            \"\"\"The weather ahead for a city.\"\"\"
            return f"{city}: sunny"
        """)
    c.add("notebook", "%%chat --notebook\nWhat is in my notebook?")
    c.add("tools", "%%chat --tools forecast --with n\nWeather in Oslo?")
    c.add("list", "%chat tools")
    c.add("approved", """
        from jupyter_llmchat.notebook.magics import current
        def approve(approval):
            print("asked to run:", repr(approval.arguments["code"]))
            return True
        reply = current().session().ask("Double n", approve=approve)
        print([(call.name, call.outcome) for call in reply.calls], total)
        """)
    run = run_cells(c.sources, raises=c.raises, cwd=tmp_path)
    bodies = chat_bodies(loopback)
    assert len(bodies) == 6
    assert [tool["function"]["name"] for tool in bodies[0]["tools"]] == [
        "list_variables", "inspect_variable", "read_cell", "run_python"]
    results = [m for m in bodies[1]["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in results] == [
        "name  type           shape/len/value\narr   numpy.ndarray  (2, 3)\nn     int            42\n"
        "functions: forecast",
        "arr: numpy.ndarray, shape (2, 3), dtype int64\nmin 0, max 5, mean 2.5, std 1.70783\nvalues:\n"
        "[[0 1 2]\n [3 4 5]]"]
    assert answer(run, c["notebook"]) == "You have an array."
    # --with: the summary follows the question; --tools adds forecast to the session's notebook tools
    assert bodies[2]["messages"][-1] == {"role": "user", "content":
                                         "Weather in Oslo?\n\nValues from my notebook, summarised:\n\n"
                                         "```text\nn: int\n42\n```"}
    assert [tool["function"]["name"] for tool in bodies[2]["tools"]] == [
        "list_variables", "inspect_variable", "read_cell", "run_python", "forecast"]
    assert bodies[3]["messages"][-1] == {"role": "tool", "tool_call_id": bodies[3]["messages"][-2]["tool_calls"][0]["id"],
                                         "content": "Oslo: sunny"}
    assert answer(run, c["tools"]) == "Sunny in Oslo."
    rows = table(run.displays(c["list"])[0])
    assert [(row[0], row[3]) for row in rows] == [("tool", "confirm"), ("list_variables", "no"),
                                                  ("inspect_variable", "no"), ("read_cell", "no"),
                                                  ("run_python", "yes"), ("forecast", "no")]
    assert rows[5][1:3] == ["The weather ahead for a city.", "city: str"]
    # run_python asks first; approved, it runs in the notebook's namespace
    assert run.stdout(c["approved"]).splitlines()[0] == "asked to run: 'total = n * 2\\nprint(total)\\ntotal'"
    assert run.stdout(c["approved"]).splitlines()[-1] == "[('run_python', 'ok')] 84"
    assert bodies[5]["messages"][-1]["content"] == "printed:\n84\n\nvalue:\n84"


# -- seeing into answers: the trimming notice, seed and fingerprint, --dry-run, the cost limit, --logprobs, -m a -m b
def test_seeing_into_answers_in_a_real_kernel(loopback, tmp_path: Path) -> None:
    import html
    import re

    from support.xss_corpus import dangers

    from jupyter_llmchat.core.estimate import raised_limit
    from jupyter_llmchat.core.models import format_cost, model_info
    from jupyter_llmchat.notebook.safe_markdown import safe_markdown

    payload = 'Careful: <img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> 🎉'
    for _ in range(4):
        loopback.queue(tokens=120)
    loopback.queue(reply=payload)
    loopback.queue(reply="Side by side.", times=2)
    c = Cells()
    c.add("load", f"""
        %load_ext jupyter_llmchat
        %config ChatMagics.base_url = "{loopback.base_url}"
        %config ChatMagics.prompt_token_limit = 300
        """)
    for index in range(3):
        c.add(f"ask{index}", f"%%chat --seed 7\nQuestion {index}")
    c.add("trimmed", "%%chat\nWhich turns do you see?")
    c.add("unlimit", "%config ChatMagics.prompt_token_limit = None")
    c.add("dry", "%%chat --dry-run --max-tokens 50\nHow much would this cost?")
    c.add("limit", "%config ChatMagics.max_cost_per_question = 0.000001")
    c.add("pricey", "%%chat\nToo pricey?", raises=True)
    c.add("nolimit", "%config ChatMagics.max_cost_per_question = None")
    c.add("logprobs", "%%chat --logprobs --no-history\nSay something dangerous")
    c.add("compare", "%%chat -m gpt-4.1 -m gpt-4o --no-history\nCompare these")
    c.add("chat_var", "print(sorted(_chat.items()))")
    run = run_cells(c.sources, raises=c.raises, cwd=tmp_path)
    bodies = chat_bodies(loopback)
    assert len(bodies) == 7  # 4 questions, the --logprobs one and the two compared: no dry run, no refused question

    def footer(index: int) -> str:
        return [shown for shown in run.displays(index) if "<sub>" in shown][-1].rsplit("<sub>", 1)[1]

    assert footer(c["ask0"]).endswith(" · seed 7 · fp\\_loopback</sub>")
    trimmed = re.search(r" · fp\\_loopback · (\d+) earlier turns? left out to fit prompt\\_token\\_limit=300</sub>$",
                        footer(c["trimmed"]))
    assert trimmed is not None, footer(c["trimmed"])
    sent_turns = sum(1 for message in bodies[3]["messages"][:-1] if message["role"] == "user")
    assert int(trimmed.group(1)) == 3 - sent_turns > 0
    dry = run.stdout(c["dry"]).splitlines()
    assert dry[0] == "gpt-4o-mini (nothing was sent)" and dry[2] == "answer: 0 to 50 tokens (max_tokens)"
    assert re.fullmatch(r"prompt: \d+ tokens \(4 earlier turns and the question\)", dry[1]), dry
    prompt = int(dry[1].split()[1])
    info = model_info("gpt-4o-mini")
    assert dry[3] == f"cost: {format_cost(info.cost(prompt, 0))} to {format_cost(info.cost(prompt, 50))}"
    refused = run.error_line(c["pricey"])
    worst = info.cost(int(refused.split("(")[1].split()[0].replace(",", "")), 16_384)
    assert refused == (
        f"CostLimitError: this question could cost up to {format_cost(worst)} on gpt-4o-mini "
        f"({refused.split('(')[1].split()[0]} prompt tokens and an answer of up to 16,384 tokens), over "
        f"max_cost_per_question=$0.0000010: raise it with %config ChatMagics.max_cost_per_question = "
        f"{raised_limit(worst):g}, lower --max-tokens, or start afresh with --new (nothing was sent)")
    # --logprobs: the answer as always, then the token view: our HTML, every token escaped
    assert (bodies[4]["logprobs"], bodies[4]["top_logprobs"]) == (True, 5)
    markdown = run.displays(c["logprobs"])
    assert markdown[0] == safe_markdown(payload)
    views = run.displays(c["logprobs"], "text/html")
    assert len(views) == 1 and dangers(views[0]) == []
    assert "<img" not in views[0] and "<script" not in views[0]
    spans = re.findall(r"<span [^>]*>([^<]*)</span>", views[0])
    assert html.unescape("".join(spans)) == payload and "🎉" in spans  # every token text; a split character whole
    plain = run.displays(c["logprobs"], "text/plain")[-1]
    assert re.fullmatch(r"\[token probability: mean \d+\.\d%, lowest \d+\.\d%\]", plain)
    assert f" · {plain[7:-1]} · fp\\_loopback</sub>" in footer(c["logprobs"])  # the same figures in the footer
    # -m a -m b: the suggestion once (gpt-4.1's window), then one output of two columns
    assert run.stdout(c["compare"]).startswith("Note: gpt-4.1 has a 1,047,576-token window, so a long conversation")
    grid = run.displays(c["compare"], "text/html")
    assert len(grid) == 1 and grid[0].count('class="llmchat-column"') == 2 and dangers(grid[0]) == []
    assert grid[0].count("<p>Side by side.</p>") == 2 and " · first token " in grid[0]
    assert run.stdout(c["chat_var"]) == "[('gpt-4.1', 'Side by side.'), ('gpt-4o', 'Side by side.')]\n"
