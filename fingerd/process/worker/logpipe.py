"""The worker's end of its log pipe: records and access lines sent to the parent.

The worker never writes a log file: each record goes as one JSON line, access
lines in batches (ACCESS_BATCH_LINES, or ACCESS_FLUSH_SECONDS after the first;
records of at most ACCESS_BATCH_BYTES), on a thread of its own that never
holds up serving and that makes the lines; what does not fit the queue is
dropped and counted. The format, and the parent's end that distrusts all of
it, are in the parent's ``logrelay``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import queue
import threading
import time

from fingerd.accesslog import Entry, lines_of
from fingerd.process.logformat import (
    ACCESS_BATCH_BYTES,
    ACCESS_BATCH_LINES,
    ACCESS_FLUSH_SECONDS,
    ACCESS_LINE_END,
    ACCESS_LOSSES_ENDED,
    ACCESS_LOSSES_WARNING,
    ACCESS_RECORD_START,
    F_SETPIPE_SZ,
    MAX_QUEUED_BATCHES,
    MAX_QUEUED_RECORDS,
    MAX_RECORD_BYTES,
    PIPE_BYTES,
    cut_middle,
)


def _line(level, message, change=False):
    """A record as the pipe carries it; one of a ``change`` ends CHANGE_RECORD_END."""
    record = {"level": level, "message": message}
    if change:
        record["change"] = True
    return (json.dumps(record) + "\n").encode()


def _batch_records(lines: list[str]) -> list[bytes]:
    """``lines`` as records of at most ACCESS_BATCH_BYTES (whole lines: halved until each
    fits; one line always does)."""
    text = ACCESS_LINE_END.decode().join(lines).encode("ascii", "backslashreplace")
    if len(text) <= ACCESS_BATCH_BYTES or len(lines) == 1:
        return [ACCESS_RECORD_START + text + b"\n"]
    half = len(lines) // 2
    return _batch_records(lines[:half]) + _batch_records(lines[half:])


#: Put in the queue when a batch begins, so that the writing thread times its sending.
_BATCH_BEGUN = b""


class PipeHandler(logging.Handler):
    """Worker side: one JSON line a record, written by a thread of its own.

    Logging never blocks serving: a thread that logs only queues the line.
    When the parent does not keep up and the queue is full, records are
    dropped, and the next one that fits is preceded by a warning saying how
    many were lost, once for each run of losses.

    Access entries (``add_access_entry``) are gathered in a batch; a full one
    (ACCESS_BATCH_LINES) is queued by the thread that filled it, one older than
    ACCESS_FLUSH_SECONDS by the writing thread, which makes the lines of each
    batch it takes. When MAX_QUEUED_BATCHES wait already, a batch's lines are
    dropped and counted in ``dropped_access_lines``; a warning says so when a
    run of such losses begins, and another how many lines it cost when it ends
    (once no batch waits, or the handler closes).
    """

    def __init__(self, fd, capacity=MAX_QUEUED_RECORDS, clock=time.monotonic):
        super().__init__()
        self.fd = fd
        self._queue: queue.Queue[bytes | list[Entry] | None] = queue.Queue(capacity)
        self._dropped = 0
        self._clock = clock
        self._batch_lock = threading.Lock()
        self._batch: list[Entry] = []
        self._batch_began = 0.0
        self._batches_queued = 0
        self._losing_access_lines = False
        #: Access lines dropped in the run of losses under way, told when it ends.
        self._lost_in_run = 0
        #: Access lines dropped since the start, the parent not reading them in time.
        self.dropped_access_lines = 0
        try:
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass  # not a pipe, or over the system's limit: the pipe holds what it holds
        self._writer = threading.Thread(target=self._write, name="fingerd-log-relay",
                                        daemon=True)
        self._writer.start()

    def add_access_entry(self, entry: Entry) -> None:
        """Add ``entry`` (accesslog.Entry) to the batch; any thread may call it."""
        with self._batch_lock:
            batch = self._batch
            batch.append(entry)
            if 1 < len(batch) < ACCESS_BATCH_LINES:
                return  # most requests: one more in a batch under way
            begins = len(batch) == 1
            if begins:
                self._batch_began = self._clock()
            else:
                batch = self._take_batch()
        if not begins:
            self._queue_batch(batch)
            return
        try:
            self._queue.put_nowait(_BATCH_BEGUN)
        except queue.Full:
            pass  # the writing thread is busy, and looks at the batch after each record

    def _take_batch(self) -> list[Entry]:
        """The batch's entries, leaving it empty; called under ``_batch_lock``."""
        entries, self._batch = self._batch, []
        return entries

    def _queue_batch(self, entries: list[Entry]) -> None:
        """Queue ``entries`` for the pipe, unless MAX_QUEUED_BATCHES wait already: their
        lines are then lost and counted."""
        with self._batch_lock:
            room = self._batches_queued < MAX_QUEUED_BATCHES
            if room:
                self._batches_queued += 1
        if room:
            try:
                self._queue.put_nowait(entries)
            except queue.Full:
                with self._batch_lock:
                    self._batches_queued -= 1
            else:
                return
        self._lose(len(entries))

    def _lose(self, count: int) -> None:
        """Count ``count`` access lines lost; the first loss of a run is told, and the
        run's count once it ends (``_send_batch``)."""
        with self._batch_lock:
            self.dropped_access_lines += count
            self._lost_in_run += count
            begins, self._losing_access_lines = not self._losing_access_lines, True
        if begins:
            try:
                self._queue.put_nowait(_line(logging.WARNING, ACCESS_LOSSES_WARNING))
            except queue.Full:
                pass

    def _due_batch(self) -> tuple[list[Entry] | None, float | None]:
        """The batch if it is due, and the seconds until the next one is (None: none
        waits)."""
        with self._batch_lock:
            if not self._batch:
                return None, None
            left = self._batch_began + ACCESS_FLUSH_SECONDS - self._clock()
            if left > 0:
                return None, left
            return self._take_batch(), None

    def emit(self, record):
        """Called under the handler's lock, so ``_dropped`` needs no other."""
        try:
            text = self.format(record)
            if len(text) > MAX_RECORD_BYTES:
                text = cut_middle(text, MAX_RECORD_BYTES)
            data = _line(record.levelno, text, getattr(record, "change", False) is True)
            if self._dropped:
                self._queue.put_nowait(self._dropped_notice())
                self._dropped = 0
            self._queue.put_nowait(data)
        except queue.Full:
            self._dropped += 1
        except Exception:
            self.handleError(record)

    def _dropped_notice(self):
        return _line(logging.WARNING, f"{self._dropped} log records dropped: the parent "
                                      f"did not read them in time")

    def _write(self):
        while True:
            due, left = self._due_batch()
            if due is not None:
                self._queue_batch(due)
                continue
            try:
                data = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if data is None:
                return
            if isinstance(data, list):
                sent = self._send_batch(data)
            else:
                sent = not data or self._send(data)  # _BATCH_BEGUN only times the batch
            if not sent:
                return

    def _send_batch(self, entries: list[Entry]) -> bool:
        """Make the lines of ``entries`` and write them; False once the pipe is gone.
        Once no batch waits, a run of losses ends, and how many lines it lost is told."""
        sent = False
        try:
            for record in _batch_records(lines_of(entries)):
                if not self._send(record):
                    return False
            sent = True
            return True
        finally:
            with self._batch_lock:
                self._batches_queued -= 1
                lost = 0
                if not self._batches_queued:
                    self._losing_access_lines = False  # caught up: a run of losses ends
                    lost, self._lost_in_run = self._lost_in_run, 0
            if lost and sent:
                self._send(_line(logging.WARNING, ACCESS_LOSSES_ENDED % lost))

    def _send(self, data: bytes) -> bool:
        """Write ``data`` whole to the pipe; False once the pipe is gone."""
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        except OSError:
            return False
        return True

    def close(self, timeout=2.0):
        """Write what is queued, the access lines gathered and what was lost, waiting
        at most ``timeout`` seconds, and stop the thread."""
        with self._batch_lock:
            last = self._take_batch()
            self._batches_queued += bool(last)
        try:
            if last:
                self._queue.put(last, timeout=timeout)
            self.acquire()
            try:
                if self._dropped:
                    self._queue.put(self._dropped_notice(), timeout=timeout)
                    self._dropped = 0
            finally:
                self.release()
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._writer.join(timeout)
        if not self._writer.is_alive() and self._lost_in_run:
            self._send(_line(logging.WARNING, ACCESS_LOSSES_ENDED % self._lost_in_run))
        super().close()
