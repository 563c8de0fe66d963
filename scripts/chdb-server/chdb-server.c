/*
 * chdb-server runs ClickHouse's clickhouse-local, from the libchdb.so of the
 * npm package @chdb/lib-linux-x64-gnu, as a loopback server for the tests:
 *
 *   chdb-server [--forward PORT:TARGET_PORT] LIBCHDB.so [clickhouse-local options...]
 *
 * clickhouse-local serves the native and HTTP protocols after
 * `SYSTEM START LISTEN QUERIES ALL` for as long as a query runs. The query
 * run here reads its standard input to the end, and that input is a pipe this
 * program holds open, so the server runs until chdb-server gets SIGTERM or
 * SIGINT (or its parent dies): then it closes the pipe, the query ends, the
 * library shuts down and the program exits 0. Any other end is an error
 * (exit 1, with the library's message on stderr).
 *
 * --forward listens on 127.0.0.1:PORT and relays every connection to
 * 127.0.0.1:TARGET_PORT (the server's native port), turning a client's
 * abrupt end into an orderly one: clickhouse-local 26.7 aborts the whole
 * process when a connection it holds is reset (an uncaught NETWORK_ERROR in
 * its TCP handler), and tests kill clients with SIGKILL on purpose. The relay
 * passes bytes unchanged; when the client side ends in any way it half-closes
 * the server side (FIN, never RST) and reads what the server still sends
 * until the server closes too.
 *
 * It is a C program, built by scripts/testbed.sh with the machine's C
 * compiler, rather than a cgo one: the library installs signal handlers of
 * its own, and a Go runtime in the same process would contend with them.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

typedef void *(*cmdline_fn)(int, char **);
typedef const char *(*error_fn)(void *);

struct run {
	cmdline_fn cmdline;
	error_fn error;
	int argc;
	char **argv;
	char *message; /* the library's error, or NULL */
	int done;      /* 1 once the query returned */
};

static void *serve(void *arg) {
	struct run *r = arg;
	void *res = r->cmdline(r->argc, r->argv);
	const char *msg = (res && r->error) ? r->error(res) : NULL;
	if (msg && *msg) r->message = strdup(msg);
	if (!res) r->message = strdup("chdb_query_cmdline returned no result");
	__atomic_store_n(&r->done, 1, __ATOMIC_SEQ_CST);
	kill(getpid(), SIGUSR1); /* wake the main thread's sigwait */
	return NULL;
}

/* ------------------------------------------------------------------ relay */

static int target_port;

struct pair {
	int client, server;
};

/* write_all writes n bytes or returns -1. */
static int write_all(int fd, const char *buf, ssize_t n) {
	while (n > 0) {
		ssize_t w = send(fd, buf, (size_t)n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR) continue;
			return -1;
		}
		buf += w;
		n -= w;
	}
	return 0;
}

/* upstream copies client → server; when the client ends (EOF, reset, any
 * error) it half-closes the server side with a FIN. */
static void *upstream(void *arg) {
	struct pair *p = arg;
	char buf[65536];
	for (;;) {
		ssize_t n = recv(p->client, buf, sizeof buf, 0);
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0 || write_all(p->server, buf, n) != 0) break;
	}
	shutdown(p->server, SHUT_WR);
	return NULL;
}

/* relay serves one connection: server → client here, client → server in a
 * second thread. What the server sends after the client is gone is read
 * and dropped, so the server's socket is closed only once it is empty. */
static void *relay(void *arg) {
	struct pair *p = arg;
	pthread_t up;
	if (pthread_create(&up, NULL, upstream, p) != 0) {
		close(p->client);
		shutdown(p->server, SHUT_WR);
		p->client = -1;
	}
	char buf[65536];
	int client_ok = p->client >= 0;
	for (;;) {
		ssize_t n = recv(p->server, buf, sizeof buf, 0);
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) break;
		if (client_ok && write_all(p->client, buf, n) != 0) {
			client_ok = 0;
			shutdown(p->client, SHUT_RDWR); /* ends upstream's recv */
		}
	}
	if (p->client >= 0) {
		shutdown(p->client, SHUT_RDWR);
		pthread_join(up, NULL);
		close(p->client);
	}
	close(p->server);
	free(p);
	return NULL;
}

static int connect_target(void) {
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) return -1;
	struct sockaddr_in a = {0};
	a.sin_family = AF_INET;
	a.sin_port = htons((unsigned short)target_port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		close(fd);
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static void *accept_loop(void *arg) {
	int ln = (int)(long)arg;
	for (;;) {
		int c = accept4(ln, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED) continue;
			return NULL;
		}
		int one = 1;
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		int s = connect_target();
		if (s < 0) { /* the server is not up (yet): refuse politely */
			close(c);
			continue;
		}
		struct pair *p = malloc(sizeof *p);
		p->client = c;
		p->server = s;
		pthread_t th;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&th, &attr, relay, p) != 0) {
			close(c);
			shutdown(s, SHUT_WR);
			close(s);
			free(p);
		}
		pthread_attr_destroy(&attr);
	}
}

static int listen_on(int port) {
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) return -1;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {0};
	a.sin_family = AF_INET;
	a.sin_port = htons((unsigned short)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 256) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int main(int argc, char **argv) {
	int forward_port = 0;
	if (argc >= 3 && strcmp(argv[1], "--forward") == 0) {
		if (sscanf(argv[2], "%d:%d", &forward_port, &target_port) != 2 || forward_port <= 0 || target_port <= 0) {
			fprintf(stderr, "chdb-server: --forward wants PORT:TARGET_PORT, not %s\n", argv[2]);
			return 2;
		}
		argc -= 2;
		argv += 2;
	}
	if (argc < 2) {
		fprintf(stderr, "usage: chdb-server [--forward PORT:TARGET_PORT] LIBCHDB.so [clickhouse-local options...]\n");
		return 2;
	}
	/* Stop with the parent (the test bed), whatever way it ends. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);

	void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		fprintf(stderr, "chdb-server: load %s: %s\n", argv[1], dlerror());
		return 1;
	}
	struct run r = {0};
	r.cmdline = (cmdline_fn)dlsym(lib, "chdb_query_cmdline");
	r.error = (error_fn)dlsym(lib, "chdb_result_error");
	if (!r.cmdline) {
		fprintf(stderr, "chdb-server: %s has no chdb_query_cmdline\n", argv[1]);
		return 1;
	}

	/* The query's input: a pipe whose write end only this program holds. */
	int fds[2];
	if (pipe(fds) != 0 || dup2(fds[0], STDIN_FILENO) < 0) {
		perror("chdb-server: stdin pipe");
		return 1;
	}
	close(fds[0]);
	fcntl(fds[1], F_SETFD, FD_CLOEXEC);

	/* Signals are taken by sigwait below: block them in every thread. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	if (forward_port) {
		int ln = listen_on(forward_port);
		if (ln < 0) {
			fprintf(stderr, "chdb-server: listen on 127.0.0.1:%d: %s\n", forward_port, strerror(errno));
			return 1;
		}
		pthread_t th;
		if (pthread_create(&th, NULL, accept_loop, (void *)(long)ln) != 0) {
			perror("chdb-server: relay thread");
			return 1;
		}
		pthread_detach(th);
	}

	/* argv[1] (the library's path) stands in for the program name. */
	r.argc = argc - 1;
	r.argv = argv + 1;
	pthread_t th;
	if (pthread_create(&th, NULL, serve, &r) != 0) {
		perror("chdb-server: thread");
		return 1;
	}
	int sig = 0;
	while (!__atomic_load_n(&r.done, __ATOMIC_SEQ_CST)) {
		if (sigwait(&set, &sig) != 0) continue;
		if (sig == SIGTERM || sig == SIGINT) break;
	}
	close(fds[1]); /* end of input: the query returns, the server stops */
	pthread_join(th, NULL);
	if (r.message) {
		fprintf(stderr, "chdb-server: %s\n", r.message);
		return 1;
	}
	if (sig != SIGTERM && sig != SIGINT) {
		fprintf(stderr, "chdb-server: the server stopped by itself\n");
		return 1;
	}
	return 0;
}
