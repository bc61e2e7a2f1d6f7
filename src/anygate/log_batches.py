"""Log lines written in batches: a gateway under load logs a line a request, and writing each one on its own
(a system call, stderr being unbuffered) costs more than making it.

``BatchedStreamHandler`` formats each record when it is logged (in the request's context, so its request id
and masking are those of the moment) and keeps the line; the lines kept go out in one write when
``interval`` seconds have passed (a timer thread), when ``capacity`` lines are waiting, at once with a
warning or worse (so a problem is never held back, and the lines before it keep their order), and when the
handler is flushed or closed: ``logging.shutdown`` at exit, and the app's lifespan shutdown, flush it.
"""

from __future__ import annotations

import logging
import threading
from typing import TextIO

FLUSH_SECONDS = 0.2
CAPACITY = 512  # lines


class BatchedStreamHandler(logging.StreamHandler[TextIO]):
    def __init__(self, stream: TextIO, interval: float = FLUSH_SECONDS, capacity: int = CAPACITY) -> None:
        super().__init__(stream)
        self.interval = interval
        self.capacity = capacity
        self._lines: list[str] = []
        self._stopped = threading.Event()
        self._timer: threading.Thread | None = None  # started with the first line kept

    def __repr__(self) -> str:
        return f"BatchedStreamHandler(waiting={len(self._lines)}, interval={self.interval})"

    def emit(self, record: logging.LogRecord) -> None:
        # ``Handler.handle`` holds the handler's lock around this call.
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - logging's own contract: a bad record is reported, never raised
            self.handleError(record)
            return
        self._keep(line, record.levelno)

    def write_line(self, line: str, level: int) -> None:
        """A line its caller formatted without a record (``telemetry.direct_handler``), kept as ``emit`` keeps one."""
        self.acquire()
        try:
            self._keep(line, level)
        finally:
            self.release()

    def _keep(self, line: str, level: int) -> None:
        self._lines.append(line)
        if level >= logging.WARNING or len(self._lines) >= self.capacity or self._stopped.is_set():
            self.flush()
        elif self._timer is None:
            self._timer = threading.Thread(target=self._flush_every_interval, name="log-batches", daemon=True)
            self._timer.start()

    def flush(self) -> None:
        self.acquire()
        try:
            if self._lines:
                text = "\n".join(self._lines) + "\n"
                self._lines.clear()
                self.stream.write(text)
            super().flush()
        except (OSError, ValueError):  # a closed or broken stream: the lines have nowhere to go
            pass
        finally:
            self.release()

    def close(self) -> None:
        self._stopped.set()
        try:
            self.flush()
        finally:
            super().close()

    def _flush_every_interval(self) -> None:
        while not self._stopped.wait(self.interval):
            self.flush()
