"""The worker's log pipe as both its ends keep to it: how records are framed, and
their bounds.

A record is one JSON line (``{"level": ..., "message": ...}``) or a batch of
access lines: ACCESS_RECORD_START, the lines with ACCESS_LINE_END between
them, and a newline. The worker (``worker.logpipe``) sends a batch when
ACCESS_BATCH_LINES wait and at most ACCESS_FLUSH_SECONDS after the first, in
records of whole lines at most ACCESS_BATCH_BYTES long; the parent
(``parent.logrelay``) distrusts all of it, and writes each record as ``clean``
makes it: one inert line, as fingerd-ctl also shows what it reads from the
daemon.
"""

import fcntl
from typing import Callable

from fingerd.limits import MAX_WORKER_LOG_CHARS

#: fcntl's F_SETPIPE_SZ, which Python names from 3.10 on (Linux's value).
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

#: Most characters of a record's message the worker sends; a longer one is cut in
#: the middle (``cut_middle``).
MAX_RECORD_BYTES = 16384
#: Records waiting for the pipe at most; past it, records are dropped and counted.
MAX_QUEUED_RECORDS = 1024
#: Access lines the worker gathers before it sends them (sooner if the first is
#: ACCESS_FLUSH_SECONDS old): what it costs a batch (a thread woken, the code that
#: makes the lines warmed) and the parent's (waking, reading, checking, writing)
#: is paid once for a thousand lines.
ACCESS_BATCH_LINES = 1024
#: Most characters of a record of access lines, separators included: what one read
#: of the pipe takes (limits.WORKER_LOG_READ_BYTES); a batch of longer lines than
#: most is sent in more than one.
ACCESS_BATCH_BYTES = 262144
#: Seconds at most from a batch's first line to its sending.
ACCESS_FLUSH_SECONDS = 1.0
#: Batches waiting for the pipe at most (1 MiB); past it, the lines of the next are
#: dropped and counted, and the queue keeps room for the records and the warning.
MAX_QUEUED_BATCHES = 4
#: What the worker asks its log pipe to hold (Linux's most for an unprivileged
#: process): the parent may be kept from reading for a while (a busy machine)
#: without a line lost, and what the pipe holds outlives a worker killed.
PIPE_BYTES = 1 << 20
#: Said when access lines begin to be lost, once a run of losses.
ACCESS_LOSSES_WARNING = ("access log lines dropped: the parent does not read them in time "
                         "(counted in fingerd_access_log_dropped_lines_total)")
#: Said when a run of losses ends (the parent reads in time again, or the worker stops):
#: how many lines it cost, which the metric, counting since the worker started, cannot say.
ACCESS_LOSSES_ENDED = "the run of access log losses ended: %d lines dropped"
#: How a record of a change (a status set) ends on the pipe: the parent rations such
#: records apart from the others, so that no flood of other lines (refused requests)
#: drops the record of a change. A worker that marks every record so gains nothing:
#: they share that second ration.
CHANGE_RECORD_END = b', "change": true}'
#: How a record of access lines begins on the pipe (a record of the others, "{"),
#: and what is between two of its lines (no line holds one).
ACCESS_RECORD_START = b"\x1e"
ACCESS_LINE_END = b"\x1f"


def cut_middle(text: str, limit: int, escape: Callable[[str], str] = str) -> str:
    """``text``, each character as ``escape`` writes it (by default as it is), in at
    most about ``limit`` characters: a longer text keeps its beginning and its end
    (where a traceback names the exception actually raised) around ``[... N
    characters cut ...]``. Both ends cut with it, the worker to send a record and the
    parent to write one, so that neither loses the end. The work is bounded by
    ``limit``, whatever the length of ``text``."""
    budget = limit // 2
    head: list[str] = []
    used = 0
    for ch in text:
        piece = escape(ch)
        if used + len(piece) > budget:
            break
        head.append(piece)
        used += len(piece)
    if len(head) == len(text):
        return "".join(head)
    budget = limit - used - 40
    tail: list[str] = []
    used = 0
    for ch in reversed(text[len(head):]):
        piece = escape(ch)
        if used + len(piece) > budget:
            break
        tail.append(piece)
        used += len(piece)
    cut = len(text) - len(head) - len(tail)
    if cut == 0:
        return "".join(head) + "".join(reversed(tail))
    return f"{''.join(head)} [... {cut} characters cut ...] {''.join(reversed(tail))}"


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if ch.isprintable():
        return ch
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def clean(text: str, limit: int = MAX_WORKER_LOG_CHARS) -> str:
    """``text`` as one inert line of at most about ``limit`` characters.

    Control characters (newlines included), Unicode format characters
    (direction overrides, zero-width ones), separators other than the space,
    surrogates and unassigned code points are written as backslash escapes
    (a backslash itself is left alone: text escaped already, as the access
    log's, stays as it was). A longer text keeps its beginning and its end
    (where a traceback says what went wrong) around ``[... N characters cut
    ...]``. The work is bounded by ``limit``, whatever the length of ``text``.
    """
    if len(text) <= limit and text.isprintable():
        return text
    return cut_middle(text, limit, _escape_char)
