"""Worker log records to the parent: whole, in order, and never blocking the worker."""

import logging
import os
import threading

from fingerd.process.logrelay import LogRelay, PipeHandler


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append((record.levelno, record.getMessage()))


def relay_all(read_fd):
    """Every record the parent's side relays from ``read_fd`` until the writer closes."""
    logger = logging.getLogger("test.logrelay")
    logger.propagate = False
    collect = Collect()
    logger.handlers = [collect]
    relay = LogRelay(read_fd, 42, logger)
    for _ in range(100_000):
        if not relay.feed():
            break
    return collect.messages


def record(message, level=logging.INFO):
    return logging.makeLogRecord({"levelno": level, "msg": message})


def test_records_arrive_whole_and_in_order():
    r, w = os.pipe()
    handler = PipeHandler(w)
    for i in range(50):
        handler.handle(record(f"line {i}\nwith a second line"))
    handler.close()
    os.close(w)
    try:
        assert relay_all(r) == [(logging.INFO, f"line {i}\nwith a second line")
                                for i in range(50)]
    finally:
        os.close(r)


def test_a_parent_that_does_not_read_never_blocks_the_worker_and_losses_are_told():
    r, w = os.pipe()
    handler = PipeHandler(w, capacity=8)
    big = "x" * 8000
    done = threading.Event()

    def flood():
        for i in range(2000):
            handler.handle(record(f"{i} {big}"))
        done.set()

    worker = threading.Thread(target=flood, daemon=True)
    worker.start()
    worker.join(30)
    assert done.is_set(), "logging blocked on a full pipe"
    drained = []
    reader = threading.Thread(target=lambda: drained.extend(relay_all(r)), daemon=True)
    reader.start()
    handler.handle(record("after the flood"))
    handler.close()
    os.close(w)
    reader.join(30)
    os.close(r)
    notices = [m for level, m in drained if "log records dropped" in m]
    lost = sum(int(m.split()[0]) for m in notices)
    kept = [m for _level, m in drained if m.endswith(big) or m == "after the flood"]
    assert lost > 0 and lost + len(kept) == 2001, "every record relayed or counted"
    assert len(notices) < lost, "one notice a run of losses, not one a record"
