"""
What the code under test logs, for tests to look at.
"""

from __future__ import annotations

from typing import cast

from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase


def logged_events(test: SynchronousTestCase) -> list[LogEvent]:
    """
    Every event logged from now until C{test}'s cleanup, in a list the test may also clear.
    """
    events: list[LogEvent] = []
    # Any callable taking an event is an observer; a bound method cannot be
    # declared to provide ILogObserver (twisted.logger.capturedLogs casts too).
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    test.addCleanup(globalLogPublisher.removeObserver, observer)
    return events
