"""Waiting on conditions. A test waits for the thing that shows an event happened (a log line, a
status code, a file, a metric, a process state), never for a fixed time or an absolute instant:
see docs/testing.md."""
import time


class WaitTimeout(AssertionError):
    """wait_until gave up: the condition never held."""


def wait_until(predicate, timeout=10.0, interval=0.02, message="condition"):
    """Calls predicate() every `interval` s until it returns a true value, and returns that value.
    Raises WaitTimeout (an AssertionError, so the test fails) naming `message` after `timeout` s;
    the predicate is called once more at the deadline, so a slow check is never cut short.
    Exceptions of the predicate propagate (a check that must never fail can assert inside)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout("timed out after %.1f s waiting for %s" % (timeout, message))
        time.sleep(interval)  # the polling interval, not a wait for an event
