"""Access log lines from the worker to the parent in batches: whole, in order, within a
second, rationed, and counted when the parent does not read them; a hostile batch
is written a line at a time, escaped and tagged, as any worker record."""

import logging
import os
import re
import threading
import time

from fingerd import logsetup
from fingerd.accesslog import lines_of
from fingerd.loghandlers import STAMP_END
from fingerd.process.logformat import (
    ACCESS_BATCH_BYTES,
    ACCESS_BATCH_LINES,
    ACCESS_LINE_END,
    ACCESS_LOSSES_ENDED,
    ACCESS_LOSSES_WARNING,
    ACCESS_RECORD_START,
)
from fingerd.process.parent.logrelay import LogRelay
from fingerd.process.worker.logpipe import PipeHandler
from tests.support.full_fs import fill
from tests.support.polling import wait_until

#: When the requests of these tests ended, and the stamp of their lines.
WHEN = time.mktime((2026, 12, 6, 1, 2, 3, 0, 0, -1)) + 0.4565
STAMP = "2026-12-06 01:02:03,456"
#: An access line as the parent writes it from a batch, its fields captured.
WRITTEN = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) fingerd\[(\d+)\]: INFO "
                     r"worker\[(\d+)\]: (access .*)")
#: The end of a run of losses as the log says it, the count captured.
ENDED = re.escape(ACCESS_LOSSES_ENDED).replace("%d", r"(\d+)")
WORKER_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} fingerd\[\d+\]: "
                         r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) worker\[(\d+)\]: (.*)")


def file_logger(path, name):
    """A logger writing to ``path`` as logsetup's file handler does, and its handler."""
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = logsetup.LogFileHandler(str(path))
    handler.setFormatter(logging.Formatter(logsetup.LOG_FORMAT))
    logger.handlers = [handler]
    return logger, handler


def relay_to_end(read_fd, logger, **kw):
    """Relay ``read_fd`` as the parent does until its writer closes it."""
    kw.setdefault("rate", 1e9)
    kw.setdefault("burst", 1e9)
    relay = LogRelay(read_fd, 42, logger, notices=logger, **kw)
    for _ in range(100_000):
        if not relay.feed():
            return relay
    raise AssertionError("the pipe never ended")


def entry(i, name="n"):
    """A query for the name ``name`` and ``i``, as the access log notes it."""
    return (WHEN, 0.0001, "finger", "127.0.0.1", "user", "found", 16, None, f"{name}{i}")


def line(i, name="n"):
    """The access line of ``entry(i, name)``."""
    return f"{STAMP}{STAMP_END}access service=finger peer=127.0.0.1 kind=user " \
           f"outcome=found bytes=16 seconds=0.000100 user=\"{name}{i}\""


def test_lines_from_many_threads_arrive_whole_in_order_a_write_a_batch(tmp_path):
    r, w = os.pipe()
    handler = PipeHandler(w)
    counts = 2000

    def client(k):
        for i in range(counts):
            handler.add_access_entry(entry(i, f"c{k}n"))
            time.sleep(0)  # as a serving thread gives up the GIL at each system call

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
    raw = []
    reader = threading.Thread(target=lambda: raw.extend(iter(lambda: os.read(r, 65536), b"")),
                              daemon=True)
    reader.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    handler.close()
    os.close(w)
    reader.join(30)
    os.close(r)
    data = b"".join(raw)
    records = data.split(b"\n")[:-1]
    assert all(record.startswith(ACCESS_RECORD_START) for record in records)
    assert all(len(record) <= ACCESS_BATCH_BYTES + 1 for record in records)
    assert len(records) <= 4 * counts // (ACCESS_BATCH_LINES // 2), \
        "lines go in batches, not one by one"

    r, w = os.pipe()
    writer = threading.Thread(target=lambda: os.write(w, data) and os.close(w), daemon=True)
    writer.start()
    logger, file_handler = file_logger(tmp_path / "log", "test.access.order")
    relay_to_end(r, logger)
    writer.join(30)
    os.close(r)
    file_handler.close()
    written = (tmp_path / "log").read_text().splitlines()
    assert len(written) == 4 * counts
    seen: dict[str, list[int]] = {}
    for text in written:
        match = WRITTEN.fullmatch(text)
        assert match, f"a split or mixed line: {text!r}"
        stamp, parent, worker, rest = match.groups()
        assert (stamp, parent, worker) == (STAMP, str(os.getpid()), "42")
        client, number = re.fullmatch(r'access .* user="c(\d)n(\d+)"', rest).groups()
        seen.setdefault(client, []).append(int(number))
    assert seen == {str(k): list(range(counts)) for k in range(4)}


def test_a_batch_is_sent_within_a_second_of_its_first_line():
    r, w = os.pipe()
    handler = PipeHandler(w)
    try:
        began = time.monotonic()
        handler.add_access_entry(entry(1))
        handler.add_access_entry(entry(2))
        data = os.read(r, 65536)  # blocks until the batch comes
        took = time.monotonic() - began
        assert data == ACCESS_RECORD_START + line(1).encode() + ACCESS_LINE_END + \
            line(2).encode() + b"\n"
        assert took < 1.5, f"the batch came after {took:.2f} s"
    finally:
        handler.close()
        os.close(w)
        os.close(r)


def test_lines_gathered_are_sent_when_the_worker_closes_its_log():
    r, w = os.pipe()
    handler = PipeHandler(w)
    handler.add_access_entry(entry(7))
    handler.close()
    os.close(w)
    assert os.read(r, 65536) == ACCESS_RECORD_START + line(7).encode() + b"\n"
    os.close(r)


def test_a_parent_that_does_not_read_loses_batches_counts_them_and_warns_once(tmp_path):
    r, w = os.pipe()
    handler = PipeHandler(w)
    total = 60 * ACCESS_BATCH_LINES  # sixty batches: most are lost
    began = time.monotonic()
    for i in range(total):
        handler.add_access_entry(entry(i))
    assert time.monotonic() - began < 20, "adding lines waited for the parent"
    wait_until(lambda: handler.dropped_access_lines > 0, what="lines to be dropped")
    logger, file_handler = file_logger(tmp_path / "log", "test.access.losses")
    relayed = []
    reader = threading.Thread(target=lambda: relayed.append(relay_to_end(r, logger)),
                              daemon=True)
    reader.start()
    handler.close(timeout=10)
    os.close(w)
    reader.join(30)
    os.close(r)
    file_handler.close()
    written = (tmp_path / "log").read_text().splitlines()
    access = [text for text in written if WRITTEN.fullmatch(text)]
    warnings = [text for text in written if ACCESS_LOSSES_WARNING in text]
    batches_lost = handler.dropped_access_lines // ACCESS_BATCH_LINES
    assert 1 <= len(warnings) and 10 * len(warnings) < batches_lost, \
        "said once a run of losses, not once a batch"
    assert WORKER_LINE.fullmatch(warnings[0]).group(1) == "WARNING"
    ended = [re.search(ENDED, text) for text in written]
    told = [int(match.group(1)) for match in ended if match]
    assert len(told) == len(warnings), "each run's end is told"
    assert sum(told) == handler.dropped_access_lines, "with what the run cost"
    assert len(access) + handler.dropped_access_lines == total, "every line written or counted"
    numbers = [int(re.search(r'user="n(\d+)"', text).group(1)) for text in access]
    assert numbers == sorted(numbers)


def test_a_hostile_batch_is_written_a_line_at_a_time_escaped_and_tagged(tmp_path):
    good = line(1).encode()
    forged = [
        b"2026-01-01 00:00:00,000 fingerd[1]: CRITICAL root password changed" + b"\t" + good,
        b"2026-01-01 00:00:00,000\taccess x\x1b[2J\r\xff\xfe",
        b"2026-01-01 00:00:00,000\taccess two\ttabs",
        b"not a stamp\taccess service=finger",
        b"",
    ]
    r, w = os.pipe()
    os.write(w, ACCESS_RECORD_START + ACCESS_LINE_END.join([good, *forged]) + b"\n")
    os.write(w, ACCESS_RECORD_START + b"\n")
    os.close(w)
    logger, handler = file_logger(tmp_path / "log", "test.access.hostile")
    relay_to_end(r, logger)
    os.close(r)
    handler.close()
    text = (tmp_path / "log").read_text(errors="strict")
    lines = text.splitlines()
    assert len(lines) == len(forged) + 2, "one line each, the empty ones too"
    for written in lines:
        match = WORKER_LINE.fullmatch(written)
        assert match and match.groups()[:2] == ("INFO", "42"), written
        assert match.group(3).isprintable()
    messages = [WORKER_LINE.fullmatch(written).group(3) for written in lines]
    assert messages[0] == line(1).partition(STAMP_END)[2], "a good line keeps its fields"
    assert messages[1].startswith("2026-01-01 00:00:00,000 fingerd[1]: CRITICAL root "
                                  "password changed\\t2026-12-06"), "the forgery is inert"
    assert messages[2] == "access x\\x1b[2J\\r\\udcff\\udcfe" or "\\x1b" in messages[2]
    assert "\x1b" not in text and "\r" not in text


def test_a_batch_whose_counts_add_up_but_whose_lines_do_not_is_written_line_by_line(
        tmp_path):
    """As many tabs as lines, but one line without and one with two; a letter in a
    digit's place, in a line after the first or in the first; every line in shape,
    but one with a tab more, or bytes that are not printable ASCII, there or in the
    tab's place: no line of these batches is written as the worker stamped it."""
    shaped = b"2026-01-01 00:00:00,000\taccess "
    batches = [[line(1).encode(), b"2026-01-01 00:00:00,000 access no tab",
                b"2026-01-01 00:00:00,000\taccess two\ttabs"],
               [line(2).encode(), b"2026-01-01 0a:00:00,000\taccess x"],
               [line(3).encode(), shaped + b"\x1b[2J\x1e\xff"],
               [line(4).encode(), shaped + b"tab\t"],
               [line(5).encode(), b"2026-01-01 00:00:00,000\x1baccess x"],
               [line(6).encode(), b"2026-01-01 00:00:00,000\xffaccess y"],
               [b"2026-01-01 0a:00:00,000\taccess first", line(7).encode()]]
    r, w = os.pipe()
    for batch in batches:
        os.write(w, ACCESS_RECORD_START + ACCESS_LINE_END.join(batch) + b"\n")
    os.close(w)
    logger, handler = file_logger(tmp_path / "log", "test.access.shapes")
    relay_to_end(r, logger)
    os.close(r)
    handler.close()
    lines = (tmp_path / "log").read_text().splitlines()
    assert not [written for written in lines if written.startswith(STAMP)]
    assert [WORKER_LINE.fullmatch(written).group(3) for written in lines] == [
        line(1).partition(STAMP_END)[2], "2026-01-01 00:00:00,000 access no tab",
        "2026-01-01 00:00:00,000\\taccess two\\ttabs", line(2).partition(STAMP_END)[2],
        "2026-01-01 0a:00:00,000\\taccess x", line(3).partition(STAMP_END)[2],
        "2026-01-01 00:00:00,000\\taccess \\x1b[2J\\x1e\\xff", line(4).partition(STAMP_END)[2],
        "2026-01-01 00:00:00,000\\taccess tab\\t", line(5).partition(STAMP_END)[2],
        "2026-01-01 00:00:00,000\\x1baccess x", line(6).partition(STAMP_END)[2],
        "2026-01-01 00:00:00,000\\xffaccess y", "2026-01-01 0a:00:00,000\\taccess first",
        line(7).partition(STAMP_END)[2]]


def test_a_batch_of_long_lines_goes_in_records_of_whole_lines_within_the_bound():
    r, w = os.pipe()
    handler = PipeHandler(w)
    long_name = "\u00e9" * 64  # written as 64 escapes of 6 characters each
    raw = []
    reader = threading.Thread(target=lambda: raw.extend(iter(lambda: os.read(r, 65536), b"")),
                              daemon=True)
    reader.start()
    entries = [(WHEN, 0.0001, "setter", "127.0.0.1", "set", "ok", 4, long_name,
                f"{i}{long_name}") for i in range(ACCESS_BATCH_LINES)]
    for item in entries:
        handler.add_access_entry(item)
    handler.close()
    os.close(w)
    reader.join(30)
    os.close(r)
    records = b"".join(raw).split(b"\n")[:-1]
    assert len(records) > 1
    assert all(len(record) <= ACCESS_BATCH_BYTES + 1 for record in records)
    lines = ACCESS_LINE_END.join(record[len(ACCESS_RECORD_START):] for record in records)
    assert lines.decode().split(ACCESS_LINE_END.decode()) == lines_of(entries)


def test_batches_are_paid_for_a_line_each_and_losses_told():
    logger = logging.getLogger("test.access.rate")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    messages = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger.handlers = [Collect()]
    now = [100.0]
    r, w = os.pipe()
    relay = LogRelay(r, 42, logger, rate=10, burst=50, clock=lambda: now[0], notices=logger)
    batch = ACCESS_RECORD_START + ACCESS_LINE_END.join(line(i).encode() for i in range(40))
    os.write(w, batch + b"\n" + batch + b"\n")
    relay.feed()
    assert len(messages) == 40, "the first batch paid for, the second not"
    now[0] += 10.0
    os.write(w, ACCESS_RECORD_START + line(0).encode() + b"\n")
    relay.feed()
    assert messages[40:] == ["worker 42: 40 log lines dropped (rate limit)",
                             "worker[42]: " + line(0).partition(STAMP_END)[2]]
    os.close(w)
    os.close(r)


def batch(lines):
    """The record of the worker's pipe that carries ``lines``."""
    return ACCESS_RECORD_START + ACCESS_LINE_END.join(x.encode() for x in lines) + b"\n"


def test_a_batch_cut_by_a_full_disk_leaves_no_line_glued_to_the_next(small_fs):
    """A batch written in part before the disk filled up ends in half a line; the
    next batch written begins on a line of its own."""
    path = small_fs / "fingerd.log"
    logger, handler = file_logger(path, "test.access.cut")
    filler = fill(small_fs)
    os.truncate(filler, os.path.getsize(filler) - 2 * 4096)  # room for part of a batch
    r, w = os.pipe()
    relay = LogRelay(r, 42, logger, notices=logger, rate=1e9, burst=1e9)
    try:
        os.write(w, batch([line(i, "cut") for i in range(100)]))
        relay.feed()
        os.unlink(filler)
        os.write(w, batch([line(i, "after") for i in range(3)]))
        relay.feed()
    finally:
        os.close(w)
        os.close(r)
        handler.close()
    written = [text for text in path.read_text().splitlines()
               if "this log file could not be written" not in text]
    cut = [text for text in written if not re.fullmatch(
        r"[-\d: ,]{23} fingerd\[\d+\]: INFO worker\[42\]: access service=finger "
        r"peer=127\.0\.0\.1 kind=user outcome=found bytes=16 seconds=0\.000100 "
        r'user="\w+"', text)]
    assert len(cut) == 1 and written[-4] == cut[0], f"one line cut, alone: {cut}"
    assert [text.rpartition(" ")[2] for text in written[-3:]] == \
        ['user="after0"', 'user="after1"', 'user="after2"']


def test_each_full_disk_spell_met_by_batches_is_told_and_its_gap_noted(small_fs, capfd):
    """Batches alone (the parent writing nothing of its own): each spell of a full disk
    is said once on standard error, and the first batch written after it is followed
    by a line saying that lines may be missing."""
    path = small_fs / "fingerd.log"
    logger, handler = file_logger(path, "test.access.gap")
    r, w = os.pipe()
    relay = LogRelay(r, 42, logger, notices=logger, rate=1e9, burst=1e9)
    try:
        for spell in range(2):
            filler = fill(small_fs)
            for _ in range(3):
                os.write(w, batch([line(i, f"lost{spell}x") for i in range(50)]))
                relay.feed()
            os.unlink(filler)
            os.write(w, batch([line(i, f"back{spell}x") for i in range(3)]))
            relay.feed()
    finally:
        os.close(w)
        os.close(r)
        handler.close()
    lines = path.read_text().splitlines()
    for spell in range(2):
        back = [n for n, text in enumerate(lines) if f'user="back{spell}x' in text]
        assert len(back) == 3
        assert lines[back[-1] + 1].endswith(
            "WARNING this log file could not be written for a while (No space left on "
            "device): lines of that time may be missing")
    assert capfd.readouterr().err.count(f"fingerd: cannot write log file {path}: ") == 2
