"""bench.database: calls that outlast a lost connection, without a server (a call that fails as a dead
connection does)."""

import pytest
import sqlalchemy.exc
from hypothesis import given
from hypothesis import strategies as st

from bench.database import Outages, impatient, outlast, transient


def dead_connection() -> Exception:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("terminating connection"))


def failing(times: int):
    """A call that fails `times` times as a dead connection does, then answers 'ok'; counts its attempts."""
    attempts = []

    def call():
        attempts.append(1)
        if len(attempts) <= times:
            raise dead_connection()
        return "ok"

    return call, attempts


@given(st.integers(min_value=0, max_value=3))
def test_an_impatient_call_tries_once_more_on_a_fresh_connection_and_no_more(times):
    """A heartbeat's pooled connection may have been killed since its last use (a restart, a pooler,
    pg_terminate_backend): the second try gets a fresh one; a database that is really away fails at once."""
    call, attempts = failing(times)
    with impatient():
        if times <= 1:
            assert outlast(Outages("test"), call) == "ok"
        else:
            with pytest.raises(sqlalchemy.exc.OperationalError):
                outlast(Outages("test"), call)
    assert len(attempts) == min(times, 1) + 1


def test_an_error_of_the_call_is_never_retried():
    attempts = []

    def call():
        attempts.append(1)
        raise ValueError("not the connection's")

    with impatient(), pytest.raises(ValueError):
        outlast(Outages("test"), call)
    assert len(attempts) == 1


def test_an_error_raised_from_none_over_a_dead_connection_is_not_transient():
    """`raise ConfigError(...) from None` inside an except of a driver error: the error was judged (an
    unreachable database at first contact is bad input) and must not be waited on as an outage."""
    try:
        try:
            raise dead_connection()
        except Exception:
            raise ValueError("cannot connect: bad input") from None
    except ValueError as e:
        judged = e
    try:
        try:
            raise dead_connection()
        except Exception as e:
            raise RuntimeError("lost it") from e
    except RuntimeError as e:
        chained = e
    assert not transient(judged) and transient(chained) and transient(dead_connection())
