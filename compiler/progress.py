"""A progress line on stderr for work that takes seconds (int8 quantisation, a large ONNX
export, PNG rendering): what is being done and the seconds so far, redrawn by a thread.
Drawn only when stderr is a terminal (NNC_PROGRESS=1 forces it, NNC_PROGRESS=0 silences it)
and only once the work has lasted NNC_PROGRESS_DELAY seconds (default 0.5); erased at the end."""

from __future__ import annotations

import os
import sys
import threading
import time

FRAMES = "|/-\\"
DEFAULT_DELAY = 0.5


def enabled(stream) -> bool:
    forced = os.environ.get("NNC_PROGRESS", "")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _delay() -> float:
    try:
        return max(0.0, float(os.environ.get("NNC_PROGRESS_DELAY", DEFAULT_DELAY)))
    except ValueError:
        return DEFAULT_DELAY


class Progress:
    """`with Progress("quantizing to int8"): ...` — silent unless `enabled(stream)`."""

    def __init__(self, label: str, stream=None, *, delay: float | None = None, interval: float = 0.1):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.delay = _delay() if delay is None else delay
        self.interval = interval
        self.on = enabled(self.stream)
        self.frames = 0  # lines drawn so far
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0

    def __enter__(self):
        if not self.on:
            return self
        self._start = time.monotonic()
        if self.delay == 0:
            self._draw()  # drawn at once: what a forced run (and its test) sees
        self._thread = threading.Thread(target=self._run, name="nnc-progress", daemon=True)
        self._thread.start()
        return self

    def _run(self):
        if self.delay and self._stop.wait(self.delay):
            return
        while not self._stop.wait(self.interval):
            self._draw()

    def _draw(self):
        spent = time.monotonic() - self._start
        frame = FRAMES[self.frames % len(FRAMES)]
        try:
            self.stream.write(f"\r{frame} {self.label} ({spent:.0f} s)\x1b[K")
            self.stream.flush()
        except (OSError, ValueError):
            self._stop.set()
            return
        self.frames += 1

    def __exit__(self, *exc):
        if self._thread is None:
            return False
        self._stop.set()
        self._thread.join()
        if self.frames:
            try:
                self.stream.write("\r\x1b[K")  # erase: what follows starts on a clean line
                self.stream.flush()
            except (OSError, ValueError):
                pass
        return False
