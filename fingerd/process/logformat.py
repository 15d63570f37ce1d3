"""The worker's log pipe as both its ends keep to it: how records are framed, and
their bounds.

A record is one JSON line (``{"level": ..., "message": ...}``) or a batch of
access lines: ACCESS_RECORD_START, the lines with ACCESS_LINE_END between
them, and a newline. The worker (``worker.logpipe``) sends a batch when
ACCESS_BATCH_LINES wait and at most ACCESS_FLUSH_SECONDS after the first, in
records of whole lines at most ACCESS_BATCH_BYTES long; the parent
(``parent.logrelay``) distrusts all of it.
"""

import fcntl

#: fcntl's F_SETPIPE_SZ, which Python names from 3.10 on (Linux's value).
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

#: Longest record relayed; the rest of a longer one is cut.
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
#: How a record of access lines begins on the pipe (a record of the others, "{"),
#: and what is between two of its lines (no line holds one).
ACCESS_RECORD_START = b"\x1e"
ACCESS_LINE_END = b"\x1f"
