"""run_python's runner: the namespace is the notebook's, output is captured from the code's thread
only, errors keep the code's own frames, and a time limit stops (or abandons) code that runs on."""

from __future__ import annotations

import sys
import threading

import pytest

from jupyter_llmchat.notebook import code_runner
from jupyter_llmchat.notebook.code_runner import CAPTURE_CHARS, RunResult, run_code


def running_code_threads() -> list[threading.Thread]:
    """Code threads still alive once given time to end (a stopped thread ends just after it says so)."""
    threads = [t for t in threading.enumerate() if t.name == "llmchat-run-python"]
    for thread in threads:
        thread.join(10)
    return [thread for thread in threads if thread.is_alive()]


def file_of(result: RunResult) -> str:
    """The ``<run_python N>`` name a run's traceback uses."""
    assert result.error is not None
    return result.error.split('File "')[1].split('"')[0]


def test_assignments_stay_printed_text_is_captured_and_the_last_expression_is_the_value(capsys) -> None:
    namespace: dict = {"n": 20}
    result = run_code("m = n + 1\nprint('m is', m)\nimport sys\nprint('careful', file=sys.stderr)\nm * 2",
                      namespace, time_limit=30)
    assert result == RunResult("finished", stdout="m is 21\n", stderr="careful\n", value="42")
    assert namespace["m"] == 21
    assert capsys.readouterr() == ("", "")  # nothing reached the real streams
    assert run_code("x = 1", namespace, time_limit=30) == RunResult("finished")
    assert run_code("None", namespace, time_limit=30) == RunResult("finished")
    assert run_code("'<b>bold</b>'", namespace, time_limit=30, show_value=str).value == "<b>bold</b>"
    assert sys.stdout is sys.__stdout__ or type(sys.stdout).__name__ != "_RoutedStream"


def test_errors_show_the_codes_own_frames_and_a_syntax_error_runs_nothing() -> None:
    namespace: dict = {}
    result = run_code("def half(x):\n    return x / 0\nprint('before')\nhalf(3)\nprint('after')", namespace,
                      time_limit=30)
    name = file_of(result)
    assert result == RunResult("failed", stdout="before\n", error=(
        "Traceback (most recent call last):\n"
        f'  File "{name}", line 4, in <module>\n'
        "    half(3)\n"
        f'  File "{name}", line 2, in half\n'
        "    return x / 0\n"
        "           ~~^~~\n"
        "ZeroDivisionError: division by zero"))
    assert "half" in namespace  # what ran before the error stays
    broken = run_code("y = 1\nprint(", namespace, time_limit=30)
    assert broken.status == "failed" and "y" not in namespace
    assert broken.error is not None and broken.error.endswith("SyntaxError: '(' was never closed")


def test_only_the_codes_thread_is_captured_and_printing_is_bounded(capsys) -> None:
    seen: list[str] = []

    def other_thread() -> None:
        print("from the kernel's other work")
        seen.append("printed")

    result = run_code("import threading\nprint('mine')\nt = threading.Thread(target=other)\nt.start()\nt.join()",
                      {"other": other_thread}, time_limit=30)
    assert result == RunResult("finished", stdout="mine\n")
    assert seen == ["printed"] and capsys.readouterr().out == "from the kernel's other work\n"
    flood = run_code("for i in range(30000):\n    print('x' * 9)", {}, time_limit=60)
    assert flood.stdout == ("x" * 9 + "\n") * (CAPTURE_CHARS // 10)
    assert flood.dropped == 30000 * 10 - CAPTURE_CHARS


def test_code_past_the_time_limit_is_stopped_and_keeps_what_it_assigned() -> None:
    namespace: dict = {}
    result = run_code("count = 0\nprint('starting')\nwhile True:\n    count += 1", namespace, time_limit=0.2)
    assert (result.status, result.stdout, result.stopped_at in (3, 4)) == ("stopped", "starting\n", True)
    assert namespace["count"] > 0
    stubborn = "while True:\n    try:\n        pass\n    except BaseException:\n        pass"
    assert run_code(stubborn, {}, time_limit=0.2).status == "stopped"  # the stop is raised again


def test_code_blocked_in_one_call_is_abandoned_and_stops_when_the_call_returns() -> None:
    gate = threading.Event()
    namespace = {"gate": gate}
    result = run_code("gate.wait()\nafter = True", namespace, time_limit=0.1)
    assert result == RunResult("abandoned")
    threads = [t for t in threading.enumerate() if t.name == "llmchat-run-python"]
    assert len(threads) == 1 and threads[0].daemon
    gate.set()
    threads[0].join(10)
    assert not threads[0].is_alive()
    assert "after" not in namespace
    assert type(sys.stdout).__name__ != "_RoutedStream"  # the streams are put back once no code runs


def test_a_kernel_interrupt_while_waiting_stops_the_code_and_is_raised() -> None:
    import os
    import signal

    namespace: dict = {}
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))  # as Jupyter interrupts a kernel
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        run_code("n = 0\nwhile True:\n    n += 1", namespace, time_limit=60)
    timer.join()
    assert running_code_threads() == []
    assert code_runner._ROUTER.stdout == {}


def test_the_async_runner_is_stopped_with_its_task_and_keeps_the_time_limit() -> None:
    import asyncio

    from jupyter_llmchat.notebook.code_runner import run_code_async

    namespace: dict = {}

    async def cancelled_while_running() -> None:
        task = asyncio.ensure_future(run_code_async("n = 0\nwhile True:\n    n += 1", namespace, time_limit=60))
        await asyncio.sleep(0.2)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return
        raise AssertionError("not cancelled")

    asyncio.run(cancelled_while_running())
    assert running_code_threads() == []  # the code ended with its task
    assert namespace["n"] > 0
    assert asyncio.run(run_code_async("print(n > 0)\nn", namespace, time_limit=30)) == RunResult(
        "finished", stdout="True\n", value=repr(namespace["n"]))
    late = asyncio.run(run_code_async("while True:\n    pass", {}, time_limit=0.2))
    assert late.status == "stopped" and late.stopped_at in (1, 2)
