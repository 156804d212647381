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
