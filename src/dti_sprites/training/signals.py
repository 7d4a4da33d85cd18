"""SIGTERM / SIGINT become a request to stop after the current step (and checkpoint),
so a scheduler's pre-emption or a Ctrl-C never loses the work since the last checkpoint.

The process still exits as the signal would have it (128 + its number: 130 for SIGINT,
143 for SIGTERM), so a script or scheduler does not mistake a stopped run for a finished one."""

import contextlib
import signal
import threading


class StopRequest:
    def __init__(self):
        self.signal_name: str | None = None

    def __bool__(self) -> bool:
        return self.signal_name is not None


@contextlib.contextmanager
def stop_on_signals():
    """Yield a StopRequest that turns true when SIGTERM or SIGINT arrives (main thread only)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum, frame):
        request.signal_name = signal.Signals(signum).name

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def exit_status(signal_name: str) -> int:
    """The shell's exit status for a process ended by this signal: 128 + its number."""
    return 128 + signal.Signals[signal_name].value
