"""Every size and time the daemon bounds, in one place so operators and tests can find
them. It imports nothing of the project: every process, and ``fingerd-ctl``, reads it."""

#: Longest query line (without its line ending) the finger service reads.
MAX_QUERY_BYTES = 1024

#: Longest status the setter accepts or the users file may hold, in UTF-8 bytes.
MAX_STATUS_BYTES = 256

#: Longest user name (README, "The users file").
MAX_NAME_CHARS = 32

#: Largest users file read; a larger one is rejected like an invalid one.
MAX_USERS_FILE_BYTES = 256 * 1024 * 1024

#: Most entries read from the Redis hash; a larger hash is refused like a too large file,
#: keeping the table served. Its bytes are bounded by MAX_USERS_FILE_BYTES.
MAX_STORE_ENTRIES = 4 * 1024 * 1024

#: Seconds any one Redis call, or the connection to Redis, may take.
STORE_TIMEOUT_SECONDS = 2.0

#: Most bytes of user list one empty query gets before the list is cut.
MAX_LIST_BYTES = 64 * 1024

#: Most characters of one answer line after each of the operator's replacements: 64
#: rules of "a => aa" would otherwise double a status 64 times.
MAX_REPLACED_LINE_CHARS = 64 * 1024

#: Bytes of query lines and answers each finger listener keeps rendered (AnswerCache).
MAX_CACHED_ANSWER_BYTES = 1024 * 1024

#: Seconds a browser or proxy may reuse a web answer without asking again (then it
#: asks with its entity tag): short, so a changed status is seen soon.
WEB_MAX_AGE_SECONDS = 10

#: Accepts taken from one listening socket per turn of the loop, so that one
#: busy service cannot starve pending reads on the same loop.
ACCEPTS_PER_TURN = 32

#: Bytes of unread client input discarded before a close, so that the close
#: sends FIN rather than a reset that would destroy the answer in flight.
DRAIN_BYTES = 4096

#: Bytes of unread input a service that lingers (the web: its client may send more
#: than is read) discards before a close, for the same reason.
LINGER_DRAIN_BYTES = 65536

#: Descriptors the worker keeps for itself besides connections: listeners,
#: the pool's files, the log pipe, the channel, a users file being read.
RESERVED_DESCRIPTORS = 64

#: Seconds a graceful stop waits for answers in progress.
STOP_GRACE_SECONDS = 5.0

#: Seconds a worker has to become ready: the first one's startup fails after it, a
#: reload is refused after it.
STARTUP_TIMEOUT = 30.0

#: Seconds a reload's new worker, ready, waits for the worker it replaces to stop
#: accepting before it accepts all the same (connections wait in the listen queue).
HANDOVER_TIMEOUT = 2.0
#: Seconds the worker waits for the parent to write the users file.
REPLY_TIMEOUT = 10.0

#: Longest worker log message the parent writes, after escaping; a longer one
#: keeps its beginning and its end, cut in the middle with a marker.
MAX_WORKER_LOG_CHARS = 2048

#: Bytes of log lines kept for standard error while it takes none (a pipe nobody
#: reads): written, in order, once it does; lines beyond are dropped and counted.
STDERR_BACKLOG_BYTES = 1024 * 1024

#: Seconds a stopping daemon waits for standard error to take the lines kept for it.
STDERR_CLOSE_SECONDS = 1.0

#: Bytes of the worker's log pipe the parent reads a turn of its loop, so that a
#: flood of log lines cannot keep it from signals and the worker's requests: a
#: batch of access lines (process/logformat.py ACCESS_BATCH_BYTES).
WORKER_LOG_READ_BYTES = 262144

#: Worker log lines the parent writes a second on average, and at once. A line
#: costs one per WORKER_LOG_TOKEN_BYTES of it begun, all read; lines over the
#: limit are dropped and counted. With access_log on, every request is a line.
WORKER_LOG_RATE = 200
WORKER_LOG_BURST = 2000
WORKER_LOG_RATE_ACCESS_LOG = 20000
WORKER_LOG_BURST_ACCESS_LOG = 40000
WORKER_LOG_TOKEN_BYTES = 256
