import os
import signal
import time

import pytest

from bench import interrupts


def stop_signal():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)  # Python runs the handler at the next bytecode; give the signal time to arrive


def test_a_stop_signal_inside_deferred_is_raised_at_its_end():
    done = []
    with interrupts.on_stop_signals(), pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            stop_signal()
            done.append("the rest of the block")
        done.append("not reached")
    assert done == ["the rest of the block"]


def test_nested_deferred_blocks_raise_at_the_outermost_end():
    done = []
    with interrupts.on_stop_signals(), pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            with interrupts.deferred():
                stop_signal()
            done.append("after the inner block")
    assert done == ["after the inner block"]


def test_allowed_stops_at_once_and_raises_a_signal_noted_before_it():
    with interrupts.on_stop_signals():
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt), interrupts.deferred(), interrupts.allowed():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        assert time.monotonic() - started < 4
        with pytest.raises(KeyboardInterrupt), interrupts.deferred():
            stop_signal()
            with interrupts.allowed():
                pytest.fail("a noted stop signal must be raised when the allowed part begins")


def test_handlers_come_back_and_ctrl_c_is_routed_too():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with interrupts.on_stop_signals():
        assert signal.getsignal(signal.SIGINT) is signal.getsignal(signal.SIGTERM) is not before[0]
        with pytest.raises(KeyboardInterrupt), interrupts.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_sigterm_while_a_command_starts_is_one_line_and_exit_130(tmp_path):
    """SIGTERM during start-up (torch importing) killed the command without a word (exit 143)."""
    import subprocess
    import sys
    from pathlib import Path

    from suite_files import write_suite

    path = write_suite(tmp_path, "early", 'optimizer = ["adamw"]', seeds="[0]", steps=10)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    code = ("import sys, bench.cli; sys.stderr.write('started\\n'); sys.stderr.flush(); "
            "sys.exit(bench.cli.main(sys.argv[1:]))")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code, "run", str(path), "--no-report"], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, cwd=tmp_path, env=env)  # fmt: skip
    assert proc.stderr.readline() == "started\n"
    time.sleep(0.2)  # inside main: the command is importing what it needs
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, err
    assert err.strip().splitlines()[-1] == "optbench: interrupted; finished runs are kept, the same command resumes"
    assert "Traceback" not in err
