"""Every size the daemon bounds, in one place so operators and tests can find them."""

#: Longest query line (without its line ending) the finger service reads.
MAX_QUERY_BYTES = 1024

#: Longest status the setter accepts or the users file may hold, in UTF-8 bytes.
MAX_STATUS_BYTES = 256

#: Longest user name (README, "The users file").
MAX_NAME_CHARS = 32

#: Largest users file read; a larger one is rejected like an invalid one.
MAX_USERS_FILE_BYTES = 256 * 1024 * 1024

#: Most bytes of user list one empty query gets before the list is cut.
MAX_LIST_BYTES = 64 * 1024

#: Bytes of query lines and answers each finger listener keeps rendered (AnswerCache).
MAX_CACHED_ANSWER_BYTES = 1024 * 1024

#: Accepts taken from one listening socket per turn of the loop, so that one
#: busy service cannot starve pending reads on the same loop.
ACCEPTS_PER_TURN = 32

#: Bytes of unread client input discarded before a close, so that the close
#: sends FIN rather than a reset that would destroy the answer in flight.
DRAIN_BYTES = 4096

#: Descriptors the worker keeps for itself besides connections: listeners,
#: the pool's files, the log pipe, the channel, a users file being read.
RESERVED_DESCRIPTORS = 64

#: Seconds a graceful stop waits for answers in progress.
STOP_GRACE_SECONDS = 5.0
