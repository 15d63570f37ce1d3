"""The root parent's answers to its workers' requests, as OpenSSH's monitor answers
its privilege-separated child: ready, alive, set and closed; and the relay of their log
lines.

A worker's channel and log pipe are registered on the parent's selector
with a callback here. ``ready`` is passed on to the supervisor once per worker; ``alive``
pushes back a running worker's heartbeat deadline; ``closed`` (it accepts no
more) is passed on to the reloads, for a reload's worker to accept; ``set`` is checked again
(the parent trusts nothing in a request) and handed to the users file
writer, whose reply is sent back to the worker that asked. A worker that
sends what no worker of ours sends, floods set requests or stops reading
its replies is killed, once: its death is then handled as any other's.
"""

import json
import logging
import os
import selectors
import signal
import time
from typing import Any, Callable

from fingerd.process.channel import WorkerMisbehaved, error_reply, parse_message, set_problem
from fingerd.process.logformat import clean
from fingerd.process.parent.filewriter import FileWriter
from fingerd.process.parent.states import Phase
from fingerd.process.parent.worker_handle import WorkerHandle
from fingerd.users.editing import SET_DONE, SET_MAYBE

log = logging.getLogger("fingerd")

#: Seconds a running worker may go without a heartbeat (it sends one a second) before
#: it is taken for stopped or wedged, and killed.
HEARTBEAT_TIMEOUT = 5.0
#: Messages a dead worker left on its channel that are heard (a ready, heartbeats).
MAX_LAST_WORDS = 16
#: Set requests a worker may have waiting behind the write in progress. It asks for
#: one at a time, so a worker with more is flooding the parent: it is killed.
MAX_WAITING_SETS = 8
#: Most characters of a set's client as the parent logs it (an address, a uid and a
#: login fit many times over); what a worker sends beyond is cut.
MAX_CLIENT_CHARS = 200
#: The phases of a worker that serves, or is about to: once another's set is written,
#: it reads the users file again, at once. One stopping finishes with what it has.
READS_SETS_AGAIN = (Phase.STARTING, Phase.RUNNING, Phase.REPLACED)


class Monitor:
    """Answers the requests on the workers' channels.

    ``kill(pid, signum)`` signals a worker; ``on_ready(handle)`` hears a worker
    say, once, that it serves, ``on_closed(handle)`` that it accepts no more.
    """

    def __init__(self, selector: selectors.BaseSelector, writes: FileWriter,
                 clock: Callable[[], float], kill: Callable[[int, int], None],
                 on_ready: Callable[[WorkerHandle], None],
                 on_closed: Callable[[WorkerHandle], None]) -> None:
        self._sel = selector
        self.writes = writes
        self._clock = clock
        self._kill = kill
        self._on_ready = on_ready
        self._on_closed = on_closed
        #: The workers watched, by pid: those not yet forgotten.
        self._watched: dict[int, WorkerHandle] = {}

    def watch(self, handle: WorkerHandle) -> None:
        """Answer ``handle``'s requests, and relay its log lines, from now on."""
        assert handle.channel is not None
        self._watched[handle.pid] = handle
        self._sel.register(handle.channel, selectors.EVENT_READ,
                           lambda channel: self._on_channel(handle))
        self._sel.register(handle.relay.fd, selectors.EVENT_READ,
                           lambda fd: self._on_log(handle))

    def forget(self, handle: WorkerHandle) -> None:
        """The worker is gone: relay its last log lines, hear its last ready, alive and
        closed (its death may be reaped before the loop read them: a worker that said it was
        ready, served and was killed at once started), close its channels, drop its sets
        not yet begun."""
        self._watched.pop(handle.pid, None)
        if handle.relay.fd is not None:
            for _ in range(1000):
                if not handle.relay.feed():
                    break
            self._close_log(handle)
        if handle.channel is not None:
            for _ in range(MAX_LAST_WORDS):
                message = parse_message(handle.channel.receive() or b"")
                if message is None or message["op"] == "set":
                    break
                try:
                    self._on_message(handle, message)
                except WorkerMisbehaved:
                    break
            self._close(handle)
        self.writes.discard_queued(handle.pid)

    def _on_log(self, sender: WorkerHandle) -> None:
        if not sender.relay.feed():
            self._close_log(sender)

    def _close_log(self, sender: WorkerHandle) -> None:
        self._sel.unregister(sender.relay.fd)
        os.close(sender.relay.fd)
        sender.relay.fd = None

    def _close(self, handle: WorkerHandle) -> None:
        assert handle.channel is not None
        self._sel.unregister(handle.channel)
        handle.channel.close()
        handle.channel = None

    def _on_channel(self, sender: WorkerHandle) -> None:
        """One request from a worker, and what its socket now takes of the replies
        waiting; one request a turn, so that signals are seen between them."""
        channel = sender.channel
        assert channel is not None
        channel.flush()
        data = channel.receive()
        if data == b"":
            self._close(sender)
            return
        try:
            if data is not None:
                self._on_request(sender, data)
        except WorkerMisbehaved as exc:
            self._kill_misbehaving(sender, str(exc))
            return
        self._watch_replies(sender)

    def _on_request(self, sender: WorkerHandle, data: bytes) -> None:
        message = parse_message(data)
        if message is None:
            raise WorkerMisbehaved("sent a malformed request")
        self._on_message(sender, message)

    def _on_message(self, sender: WorkerHandle, message: dict[str, Any]) -> None:
        assert sender.channel is not None
        if message["op"] == "ready":
            if sender.channel.said_ready:
                raise WorkerMisbehaved("said it was ready twice")
            sender.channel.said_ready = True
            sender.channel.users_problem = message.get("users")
            self._on_ready(sender)
        elif message["op"] == "alive":
            self._on_alive(sender, message["served"])
        elif message["op"] == "closed":
            self._on_closed(sender)
        else:
            self._on_set(sender, message)

    def _on_alive(self, sender: WorkerHandle, served: int) -> None:
        if sender.phase is Phase.RUNNING:
            sender.move(Phase.RUNNING, self._clock() + HEARTBEAT_TIMEOUT)
        if served and not sender.served:
            sender.served = True
            log.info("worker %d has answered requests", sender.pid)

    def _on_set(self, sender: WorkerHandle, message: dict[str, Any]) -> None:
        assert sender.channel is not None
        problem = set_problem(message)
        if problem:
            sender.channel.send(error_reply(message["id"], problem))
        elif self.writes.waiting >= MAX_WAITING_SETS:
            raise WorkerMisbehaved(f"sent more than {MAX_WAITING_SETS} set requests "
                                   f"without waiting for their answers")
        else:
            # The worker's deadline is on CLOCK_MONOTONIC, shared with this process; one
            # that is past is answered as too late, and never written.
            within = message["deadline"] - time.monotonic()
            self.writes.submit(sender.config.users_file, message,
                               lambda reply: self._reply(sender, reply, message),
                               owner=sender.pid, within=within)

    def _reply(self, sender: WorkerHandle, reply: bytes, request: dict[str, Any]) -> None:
        """Log a status written, or perhaps written (outcome unknown), as the request
        names its client, and send the reply to the worker that asked, if it is still
        there; such a status is read again by every other worker that serves or is
        about to.

        The parent logs the set itself, not the worker: the worker's lines are
        rate-limited as one stream, and a flood of other lines (refused requests,
        say) would drop the record of a change to the file with them."""
        answer = json.loads(reply)
        if answer["ok"] or answer.get("unknown"):
            by = clean(request["by"], MAX_CLIENT_CHARS)
            if answer["ok"]:
                log.info(SET_DONE, by, request["name"])
            else:
                log.warning(SET_MAYBE, by, request["name"], answer["error"])
            for other in self._watched.values():
                if other is not sender and other.phase in READS_SETS_AGAIN:
                    self._kill(other.pid, signal.SIGHUP)
        if sender.channel is None:
            return
        try:
            sender.channel.send(reply)
        except WorkerMisbehaved as exc:
            self._kill_misbehaving(sender, str(exc))
            return
        self._watch_replies(sender)

    def _watch_replies(self, sender: WorkerHandle) -> None:
        """Watch the channel for room to write while replies wait, and only then."""
        channel = sender.channel
        if channel is None:
            return  # the worker was killed meanwhile
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if channel.waiting else 0)
        if events != sender.channel_events:
            self._sel.modify(channel, events, self._sel.get_key(channel).data)
            sender.channel_events = events

    def _kill_misbehaving(self, sender: WorkerHandle, reason: str) -> None:
        """Kill the worker, once: its death is then handled as any other's."""
        log.error("worker %d %s; killing it", sender.pid, reason)
        self._kill(sender.pid, signal.SIGKILL)
        self.forget(sender)
