/*
 * Load generator for scripts/bench.py: one TCP connection a query, every
 * answer checked, COUNT queries with CONCURRENCY in flight, on loopback.
 * Written in C so that the client is not what limits a 2-core machine.
 *
 *   loadgen PORT CONCURRENCY COUNT START_AT QUERY EXPECTED [START]
 *
 * START_AT is a Unix time to begin at (to start several processes together).
 * A reply must be EXPECTED; with START, it must begin with START and end with
 * EXPECTED (HTTP: the status line and the body, a Date header between them).
 * Prints "ERRORS ELAPSED_SECONDS" then one latency in microseconds a line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_REPLY 4096
#define DEADLINE_SECONDS 300.0

struct query {
	int fd;
	int sending;
	double started;
	size_t got;
	char reply[MAX_REPLY];
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int launch(int ep, struct sockaddr_in *addr, struct query *q)
{
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = q };
	q->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (q->fd < 0)
		return -1;
	q->sending = 1;
	q->got = 0;
	q->started = now();
	if (connect(q->fd, (struct sockaddr *)addr, sizeof *addr) < 0 && errno != EINPROGRESS) {
		close(q->fd);
		return -1;
	}
	return epoll_ctl(ep, EPOLL_CTL_ADD, q->fd, &ev);
}

int main(int argc, char **argv)
{
	if (argc != 7 && argc != 8) {
		fprintf(stderr, "usage: loadgen PORT CONCURRENCY COUNT START_AT QUERY EXPECTED "
			"[START]\n");
		return 2;
	}
	int port = atoi(argv[1]), concurrency = atoi(argv[2]), count = atoi(argv[3]);
	double start_at = atof(argv[4]);
	const char *query = argv[5], *expected = argv[6];
	const char *start = argc == 8 ? argv[7] : NULL;
	size_t query_len = strlen(query), expected_len = strlen(expected);
	size_t start_len = start ? strlen(start) : 0;
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);

	struct query *queries = calloc(concurrency, sizeof *queries);
	unsigned *latencies = calloc(count, sizeof *latencies);
	struct epoll_event *events = calloc(concurrency, sizeof *events);
	int ep = epoll_create1(0);
	if (!queries || !latencies || !events || ep < 0)
		return 1;

	struct timeval tv;
	gettimeofday(&tv, NULL);
	double wait = start_at - (tv.tv_sec + tv.tv_usec / 1e6);
	if (wait > 0)
		usleep((useconds_t)(wait * 1e6));

	int started = 0, done = 0, errors = 0, in_flight = 0;
	double began = now();
	for (int i = 0; i < concurrency && started < count; i++, started++) {
		if (launch(ep, &addr, &queries[i]) < 0)
			errors++;
		else
			in_flight++;
	}
	while (in_flight > 0 && now() - began < DEADLINE_SECONDS) {
		int n = epoll_wait(ep, events, concurrency, 5000);
		for (int i = 0; i < n; i++) {
			struct query *q = events[i].data.ptr;
			int finished = 0, ok = 0;
			if (q->sending) {
				int err = 0;
				socklen_t len = sizeof err;
				getsockopt(q->fd, SOL_SOCKET, SO_ERROR, &err, &len);
				if (err || send(q->fd, query, query_len, MSG_NOSIGNAL) != (ssize_t)query_len) {
					finished = 1;
				} else {
					struct epoll_event ev = { .events = EPOLLIN, .data.ptr = q };
					q->sending = 0;
					epoll_ctl(ep, EPOLL_CTL_MOD, q->fd, &ev);
				}
			} else {
				ssize_t got = recv(q->fd, q->reply + q->got, MAX_REPLY - q->got, 0);
				if (got > 0 && q->got + got < MAX_REPLY) {
					q->got += got;
				} else {
					finished = 1;
					ok = got == 0 && (start ? q->got >= start_len + expected_len &&
							  memcmp(q->reply, start, start_len) == 0 &&
							  memcmp(q->reply + q->got - expected_len,
								 expected, expected_len) == 0
							: q->got == expected_len &&
							  memcmp(q->reply, expected, expected_len) == 0);
				}
			}
			if (!finished)
				continue;
			if (ok)
				latencies[done++] = (unsigned)((now() - q->started) * 1e6);
			else
				errors++;
			close(q->fd);
			in_flight--;
			if (started < count) {
				started++;
				if (launch(ep, &addr, q) < 0)
					errors++;
				else
					in_flight++;
			}
		}
	}
	errors += in_flight + (count - started);
	printf("%d %.6f\n", errors, now() - began);
	for (int i = 0; i < done; i++)
		printf("%u\n", latencies[i]);
	return 0;
}
