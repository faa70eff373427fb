"""Caffe's -sigint_effect / -sighup_effect for `netdef train`: SIGINT stops after the current iteration
(with the closing snapshot), SIGHUP writes a snapshot and training goes on; either can be set to stop,
snapshot or nothing. SIGTERM (`kill`, a job scheduler's preemption) always stops as SIGINT's stop does:
the closing snapshot, then exit 0. Imports no torch: the CLI offers SIGNAL_EFFECTS as choices."""
from __future__ import annotations

import contextlib
import signal
import threading

SIGNAL_EFFECTS = ("stop", "snapshot", "none")


class SignalActions:
    """Caffe's -sigint_effect / -sighup_effect: a signal only records a request (stop, snapshot or none),
    which the loop acts on between iterations. A second SIGINT while a stop is pending interrupts at once."""

    def __init__(self, sigint: str = "stop", sighup: str = "snapshot"):
        self.effects = {signal.SIGINT: sigint, signal.SIGTERM: "stop"}  # SIGTERM: a scheduler's or `kill`'s stop
        if hasattr(signal, "SIGHUP"):
            self.effects[signal.SIGHUP] = sighup
        self.pending: list = []

    def _handle(self, signum, frame):
        effect = self.effects[signum]
        if signum == signal.SIGINT and "stop" in self.pending:
            raise KeyboardInterrupt
        if effect != "none":
            self.pending.append(effect)

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signal.signal(signum, self._handle) for signum in self.effects}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def take(self) -> str | None:
        """The most drastic pending request (stop before snapshot), clearing all of them."""
        if not self.pending:
            return None
        action = "stop" if "stop" in self.pending else "snapshot"
        self.pending.clear()
        return action

    def stop_pending(self) -> bool:
        return "stop" in self.pending

