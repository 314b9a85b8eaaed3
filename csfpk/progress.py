"""A dependency-free progress line on stderr: done/total subjects, subjects/s and time left."""

import sys
import time


class Progress:
    """Plain-text progress updated in place with ``\\r``.

    Shown when stderr is a terminal, or when ``enabled=True`` forces it; ``enabled=False`` hides it.
    """

    def __init__(self, total, label="subjects", enabled=None, stream=None, min_interval=0.2):
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.total = int(total)
        self.label = label
        self.done = 0
        self.start = time.perf_counter()
        self._last = 0.0
        self.min_interval = min_interval

    def update(self, k):
        """Count ``k`` more subjects as done."""
        self.done += int(k)
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.min_interval or self.done >= self.total):
            self._last = now
            self.stream.write("\r" + self.line(now))
            self.stream.flush()

    def line(self, now=None):
        elapsed = (now or time.perf_counter()) - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = f"{left:5.0f} s left" if left == left else "   ? s left"
        return f"{self.done:>{len(str(self.total))}}/{self.total} {self.label} ({pct:5.1f} %)  {rate:>10,.0f} {self.label}/s  {eta}"

    def close(self):
        if self.enabled:
            self.stream.write("\r" + self.line() + "\n")
            self.stream.flush()
