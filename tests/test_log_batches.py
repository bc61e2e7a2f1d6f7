"""Log lines are written in batches: one write for the lines kept, none lost at close, a warning at once."""

from __future__ import annotations

import io
import logging
import threading

from anygate.log_batches import BatchedStreamHandler


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def batched_logger(stream: CountingStream, **options: float) -> tuple[logging.Logger, BatchedStreamHandler]:
    handler = BatchedStreamHandler(stream, **options)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.Logger("test-batches")
    logger.addHandler(handler)
    return logger, handler


def test_lines_kept_go_out_in_one_write_when_flushed() -> None:
    stream = CountingStream()
    logger, handler = batched_logger(stream, interval=3600)
    for n in range(5):
        logger.info("line %d", n)
    assert stream.writes == 0
    handler.flush()
    assert stream.writes == 1
    assert stream.getvalue().splitlines() == [f"INFO line {n}" for n in range(5)]


def test_closing_writes_every_line_kept() -> None:
    stream = CountingStream()
    logger, handler = batched_logger(stream, interval=3600)
    logger.info("first")
    logger.info("last")
    handler.close()
    assert stream.getvalue() == "INFO first\nINFO last\n"
    logger.info("after close")  # written at once: no timer is left to write it
    assert stream.getvalue().endswith("INFO after close\n")


def test_a_warning_is_written_at_once_after_the_lines_before_it() -> None:
    stream = CountingStream()
    logger, handler = batched_logger(stream, interval=3600)
    logger.info("before")
    logger.warning("trouble")
    assert stream.getvalue() == "INFO before\nWARNING trouble\n"
    assert stream.writes == 1
    handler.close()


def test_a_full_batch_is_written_without_waiting_for_the_timer() -> None:
    stream = CountingStream()
    logger, handler = batched_logger(stream, interval=3600, capacity=3)
    for n in range(7):
        logger.info("line %d", n)
    assert stream.writes == 2
    assert len(stream.getvalue().splitlines()) == 6
    handler.close()
    assert len(stream.getvalue().splitlines()) == 7


def test_the_timer_writes_lines_kept() -> None:
    stream = CountingStream()
    logger, handler = batched_logger(stream, interval=0.01)
    logger.info("waiting")
    pause = threading.Event()
    for _ in range(1000):  # up to 10 s on a busy machine; the timer fires every 10 ms
        if stream.getvalue():
            break
        pause.wait(0.01)
    assert stream.getvalue() == "INFO waiting\n"
    handler.close()
