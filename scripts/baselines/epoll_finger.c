/*
 * A minimal C finger server for scripts/bench.py: the floor that the
 * per-query cost of a Python server is compared with. One thread, epoll,
 * non-blocking sockets; a query is read up to its LF, looked up in a hash
 * table of the users file and answered, and the connection closed. It
 * checks nothing else and is not a server to run.
 *
 *   epoll_finger PORT USERS_FILE
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
#include <unistd.h>

#define MAX_LINE 1024
#define MAX_FDS 65536
#define BUCKETS 65536

struct user {
	struct user *next;
	char *name;
	char *answer;
	size_t answer_len;
};

static struct user *table[BUCKETS];
static char *buffers[MAX_FDS];
static size_t filled[MAX_FDS];
static const char NO_SUCH_USER[] = "No such user\r\n";

static unsigned hash(const char *s, size_t n)
{
	unsigned h = 2166136261u;
	while (n--)
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h % BUCKETS;
}

static void load_users(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[MAX_LINE + 2];
	if (!f) {
		perror(path);
		exit(1);
	}
	while (fgets(line, sizeof line, f)) {
		char *colon = strchr(line, ':');
		if (line[0] == '#' || !colon)
			continue;
		line[strcspn(line, "\r\n")] = 0;
		*colon = 0;
		struct user *u = malloc(sizeof *u);
		u->name = strdup(line);
		u->answer_len = strlen(colon + 1) + 2;
		u->answer = malloc(u->answer_len + 1);
		sprintf(u->answer, "%s\r\n", colon + 1);
		unsigned h = hash(line, strlen(line));
		u->next = table[h];
		table[h] = u;
	}
	fclose(f);
}

static void answer(int fd, char *line, size_t len)
{
	const char *out = NO_SUCH_USER;
	size_t out_len = sizeof NO_SUCH_USER - 1;
	if (len && line[len - 1] == '\r')
		len--;
	for (struct user *u = table[hash(line, len)]; u; u = u->next)
		if (strlen(u->name) == len && !memcmp(u->name, line, len)) {
			out = u->answer;
			out_len = u->answer_len;
			break;
		}
	if (write(fd, out, out_len) < 0)
		perror("write");
}

/* Read what has arrived; return 1 when the connection is finished (answered or failed). */
static int serve(int fd)
{
	if (!buffers[fd])
		buffers[fd] = malloc(MAX_LINE);
	for (;;) {
		ssize_t n = read(fd, buffers[fd] + filled[fd], MAX_LINE - filled[fd]);
		if (n < 0)
			return errno != EAGAIN;
		if (n == 0)
			return 1;
		char *lf = memchr(buffers[fd] + filled[fd], '\n', n);
		filled[fd] += n;
		if (lf) {
			answer(fd, buffers[fd], lf - buffers[fd]);
			return 1;
		}
		if (filled[fd] == MAX_LINE)
			return 1;
	}
}

static void finish(int fd)
{
	filled[fd] = 0;
	close(fd);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s PORT USERS_FILE\n", argv[0]);
		return 2;
	}
	load_users(argv[2]);
	int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int one = 1;
	setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 1024)) {
		perror("bind");
		return 1;
	}
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener}, events[256];
	epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
	for (;;) {
		int n = epoll_wait(ep, events, 256, -1);
		for (int i = 0; i < n; i++) {
			int fd = events[i].data.fd;
			if (fd != listener) {
				if (serve(fd))
					finish(fd);
				continue;
			}
			int conn;
			while ((conn = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
				if (conn >= MAX_FDS) {
					close(conn);
					continue;
				}
				if (serve(conn)) {
					finish(conn);
					continue;
				}
				ev.data.fd = conn;
				epoll_ctl(ep, EPOLL_CTL_ADD, conn, &ev);
			}
		}
	}
}
