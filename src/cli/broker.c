/* Supervises mosquitto: one thread starts it, forwards its output line by line to stderr,
 * waits for it, restarts it with backoff when it dies, and stops it when asked. The thread
 * forks, so the child's parent-death signal (which follows the forking thread) fires when
 * imprint dies in any way, SIGKILL included. */
#include "cli/broker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/mem.h"
#include "core/timeutil.h"

#define START_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS  5000
#define BACKOFF_MIN_S    1
#define BACKOFF_MAX_S    30
#define STEADY_S         60 /* up this long and the backoff starts over */
#define LINE_CAP         2048

enum { STARTING, RUNNING, FAILED };

struct imp_broker {
	broker__plan plan;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int state;    /* STARTING until the first mosquitto runs or fails */
	int stopping; /* imp_broker_stop was called */
	pid_t pid;
	char last_error[LINE_CAP]; /* mosquitto's last "Error: ..." line */
};

typedef struct {
	char buf[LINE_CAP];
	size_t n;
} line_buf;

static int64_t now_ms(void) { return (int64_t)(imp_mono_us() / 1000); }

/* One line of mosquitto's output: to stderr with a prefix; "running" is the sign it has
 * opened its listeners and loaded its plugins. */
static void on_line(imp_broker *b, const char *line, int *ready)
{
	fprintf(stderr, "mosquitto: %s\n", line);
	if(strncmp(line, "Error", 5) == 0) {
		pthread_mutex_lock(&b->mu);
		snprintf(b->last_error, sizeof b->last_error, "%s", line);
		pthread_mutex_unlock(&b->mu);
	}
	if(strncmp(line, "mosquitto version ", 18) == 0 && strstr(line, " running")) *ready = 1;
}

/* Reads what is there on fd; 1 at end of file. Lines longer than LINE_CAP are split. */
static int drain(imp_broker *b, int fd, line_buf *lb, int *ready)
{
	char chunk[4096];
	ssize_t got = read(fd, chunk, sizeof chunk);
	if(got < 0) return errno == EINTR || errno == EAGAIN ? 0 : 1;
	if(got == 0) {
		if(lb->n) {
			lb->buf[lb->n] = '\0';
			on_line(b, lb->buf, ready);
			lb->n = 0;
		}
		return 1;
	}
	for(ssize_t i = 0; i < got; i++) {
		if(chunk[i] == '\n' || lb->n == sizeof lb->buf - 1) {
			lb->buf[lb->n] = '\0';
			on_line(b, lb->buf, ready);
			lb->n = 0;
			if(chunk[i] == '\n') continue;
		}
		lb->buf[lb->n++] = chunk[i];
	}
	return 0;
}

/* When imprint itself runs with AddressSanitizer (the test build), the plugin is built with
 * it too and mosquitto can load it only with the runtime preloaded: the path of the
 * runtime this process has mapped, or "" when there is none. */
static const char *asan_runtime(void)
{
	static char path[512];
	static int done;
	if(done) return path;
	done = 1;
	FILE *f = fopen("/proc/self/maps", "r");
	char line[768];
	while(f && fgets(line, sizeof line, f)) {
		char *p = strchr(line, '/');
		if(p && strstr(p, "/libasan.so")) {
			p[strcspn(p, "\n")] = '\0';
			snprintf(path, sizeof path, "%s", p);
			break;
		}
	}
	if(f) fclose(f);
	return path;
}

/* DATA/broker/mosquitto.pid names the broker serve last started. A serve that died in a
 * way that left its broker running (its parent-death signal is the usual guard) would
 * otherwise find the ports taken by it at the next start: a broker still running with this
 * data directory's configuration is stopped first. */
static void pid_path(const imp_broker *b, char *out, size_t cap)
{
	const char *slash = strrchr(b->plan.conf, '/');
	size_t n = slash ? (size_t)(slash - b->plan.conf) : 0;
	snprintf(out, cap, "%.*s/mosquitto.pid", (int)n, b->plan.conf);
}

static void stop_stale(const imp_broker *b)
{
	char path[sizeof b->plan.conf + 16], proc[64], cmd[sizeof b->plan.conf + 64];
	pid_path(b, path, sizeof path);
	FILE *f = fopen(path, "r");
	long pid = 0;
	if(!f) return;
	if(fscanf(f, "%ld", &pid) != 1) pid = 0;
	fclose(f);
	if(pid <= 1) return;
	snprintf(proc, sizeof proc, "/proc/%ld/cmdline", pid);
	f = fopen(proc, "r");
	if(!f) return;
	size_t n = fread(cmd, 1, sizeof cmd - 1, f);
	fclose(f);
	cmd[n] = '\0';
	for(size_t i = 0; i < n; i++) {
		if(cmd[i] == '\0') cmd[i] = ' ';
	}
	/* Only a mosquitto started with this very configuration file. */
	if(!strstr(cmd, "mosquitto") || !strstr(cmd, b->plan.conf)) return;
	fprintf(stderr, "imprint: stopping a broker left running by an earlier serve (pid %ld)\n", pid);
	kill((pid_t)pid, SIGTERM);
	for(int i = 0; i < 50 && kill((pid_t)pid, 0) == 0; i++) usleep(100000);
	if(kill((pid_t)pid, 0) == 0) kill((pid_t)pid, SIGKILL);
}

static void write_pid(const imp_broker *b, pid_t pid)
{
	char path[sizeof b->plan.conf + 16];
	pid_path(b, path, sizeof path);
	FILE *f = fopen(path, "w");
	if(!f) return;
	fprintf(f, "%ld\n", (long)pid);
	fclose(f);
}

/* Forks mosquitto with its output on *out_fd. Between fork and exec only async-signal-safe
 * calls: imprint has other threads. */
static pid_t spawn(imp_broker *b, int *out_fd)
{
	int fds[2];
	char *const argv[] = {b->plan.mosquitto, "-c", b->plan.conf, NULL};
	if(pipe(fds) != 0) return -1;
	/* Only this thread forks, so nothing can inherit the pipe between these calls. */
	fcntl(fds[0], F_SETFD, FD_CLOEXEC);
	fcntl(fds[1], F_SETFD, FD_CLOEXEC);
	/* The environment, plus LD_PRELOAD of the sanitizer runtime when there is one (made
	 * before fork: the child may only make async-signal-safe calls). */
	extern char **environ;
	static char preload[600];
	size_t nenv = 0;
	while(environ[nenv]) nenv++;
	char **envp = calloc(nenv + 3, sizeof *envp);
	if(!envp) {
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	size_t k = 0;
	for(size_t i = 0; i < nenv; i++) {
		if(strncmp(environ[i], "LD_PRELOAD=", 11) != 0 && strncmp(environ[i], "ASAN_OPTIONS=", 13) != 0)
			envp[k++] = environ[i];
	}
	if(asan_runtime()[0]) {
		snprintf(preload, sizeof preload, "LD_PRELOAD=%s", asan_runtime());
		envp[k++] = preload;
		/* mosquitto's own allocations are not ours to judge */
		envp[k++] = (char *)"ASAN_OPTIONS=detect_leaks=0";
	}
	pid_t parent = getpid();
	sigset_t none;
	sigemptyset(&none);
	pid_t pid = fork();
	if(pid == 0) {
		/* Its own process group, so a Ctrl-C on the terminal reaches imprint alone, which
		 * then stops the broker in order; dies with imprint (the forking thread's death). */
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if(getppid() != parent) _exit(1);
		int null = open("/dev/null", O_RDONLY);
		if(null >= 0) dup2(null, 0);
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		/* Nothing of imprint's (the API's socket, the store) stays open in the broker. */
		if(syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
			for(int fd = 3; fd < 4096; fd++) close(fd);
		signal(SIGPIPE, SIG_DFL);
		sigprocmask(SIG_SETMASK, &none, NULL); /* serve blocks SIGTERM for its sigwait */
		execve(argv[0], argv, envp);
		_exit(127);
	}
	free(envp);
	close(fds[1]);
	if(pid < 0) {
		close(fds[0]);
		return -1;
	}
	*out_fd = fds[0];
	return pid;
}

static void describe_exit(int st, char *out, size_t cap)
{
	if(WIFEXITED(st)) snprintf(out, cap, "exited with status %d", WEXITSTATUS(st));
	else if(WIFSIGNALED(st)) snprintf(out, cap, "was killed by signal %d", WTERMSIG(st));
	else snprintf(out, cap, "ended");
}

static void set_state(imp_broker *b, int state)
{
	pthread_mutex_lock(&b->mu);
	b->state = state;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

/* Runs one mosquitto until it exits: forwards its output, and when stopping (or, for the
 * first start, when it does not come up in time) ends it, SIGKILL after STOP_TIMEOUT_MS.
 * Its wait status into *st. */
static int run_once(imp_broker *b, int first, int *st)
{
	int fd = -1, ready = 0, eof = 0, reported = 0;
	pid_t pid = spawn(b, &fd);
	if(pid < 0) {
		fprintf(stderr, "imprint: cannot start %s: %s\n", b->plan.mosquitto, strerror(errno));
		return -1;
	}
	write_pid(b, pid);
	pthread_mutex_lock(&b->mu);
	b->pid = pid;
	pthread_mutex_unlock(&b->mu);
	line_buf lb = {.n = 0};
	int64_t started = now_ms(), term_at = 0;
	for(;;) {
		if(!eof) {
			struct pollfd p = {.fd = fd, .events = POLLIN};
			if(poll(&p, 1, 100) > 0) eof = drain(b, fd, &lb, &ready);
		} else {
			usleep(20000);
		}
		if(ready && !reported) {
			reported = 1;
			fprintf(stderr, "imprint: broker running (mosquitto pid %d)\n", (int)pid);
			if(first) set_state(b, RUNNING);
		}
		if(waitpid(pid, st, WNOHANG) == pid) break;
		pthread_mutex_lock(&b->mu);
		int stop = b->stopping;
		pthread_mutex_unlock(&b->mu);
		int64_t t = now_ms();
		if(!term_at && (stop || (first && !ready && t - started > START_TIMEOUT_MS))) {
			if(!stop) fprintf(stderr, "imprint: mosquitto did not start within %d s\n", START_TIMEOUT_MS / 1000);
			kill(pid, SIGTERM);
			term_at = t;
		} else if(term_at && t - term_at > STOP_TIMEOUT_MS) {
			fprintf(stderr, "imprint: mosquitto did not stop within %d s: SIGKILL\n", STOP_TIMEOUT_MS / 1000);
			kill(pid, SIGKILL);
			waitpid(pid, st, 0);
			break;
		}
	}
	while(!eof) { /* what it wrote before it ended */
		struct pollfd p = {.fd = fd, .events = POLLIN};
		eof = poll(&p, 1, 200) <= 0 || drain(b, fd, &lb, &ready);
	}
	close(fd);
	pthread_mutex_lock(&b->mu);
	b->pid = 0;
	pthread_mutex_unlock(&b->mu);
	return reported;
}

/* Sleeps s seconds or until stopping; 1 when stopping. */
static int wait_or_stop(imp_broker *b, int s)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += s;
	pthread_mutex_lock(&b->mu);
	while(!b->stopping && pthread_cond_timedwait(&b->cv, &b->mu, &until) != ETIMEDOUT) {
	}
	int stop = b->stopping;
	pthread_mutex_unlock(&b->mu);
	return stop;
}

static void *supervise(void *arg)
{
	imp_broker *b = arg;
	int backoff = BACKOFF_MIN_S;
	for(int first = 1;; first = 0) {
		int st = 0;
		int64_t started = now_ms();
		int ran = run_once(b, first, &st);
		pthread_mutex_lock(&b->mu);
		int stop = b->stopping;
		pthread_mutex_unlock(&b->mu);
		if(stop) break;
		if(first && ran <= 0) {
			set_state(b, FAILED);
			break;
		}
		if(now_ms() - started >= STEADY_S * 1000) backoff = BACKOFF_MIN_S;
		char how[64];
		describe_exit(st, how, sizeof how);
		fprintf(stderr, "imprint: mosquitto %s after %lld s; restarting it in %d s\n", how,
		        (long long)((now_ms() - started) / 1000), backoff);
		if(wait_or_stop(b, backoff)) break;
		backoff = backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : backoff * 2;
	}
	return NULL;
}

imp_err imp_broker_start(const imp_broker_opts *o, imp_broker **out)
{
	*out = NULL;
	imp_broker *b = imp_calloc(1, sizeof *b);
	if(!b) return IMP_ERR_NOMEM;
	imp_err rc = broker__prepare(o, &b->plan);
	if(rc) {
		imp_free(b);
		return rc;
	}
	stop_stale(b);
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->cv, NULL);
	b->state = STARTING;
	if(pthread_create(&b->thread, NULL, supervise, b) != 0) {
		pthread_mutex_destroy(&b->mu);
		pthread_cond_destroy(&b->cv);
		imp_free(b);
		return IMP_ERR_NOMEM;
	}
	pthread_mutex_lock(&b->mu);
	while(b->state == STARTING) pthread_cond_wait(&b->cv, &b->mu);
	int state = b->state;
	pthread_mutex_unlock(&b->mu);
	if(state == FAILED) {
		fprintf(stderr, "imprint serve: the broker did not start%s%s%s\n", b->last_error[0] ? " (" : "",
		        b->last_error, b->last_error[0] ? ")" : "");
		if(strstr(b->last_error, "in use"))
			fprintf(stderr, "imprint serve: an MQTT port is taken (another broker?): %s. Choose others with "
			                "--mqtt-listen, --mqtts-listen, --mqtts-cert-listen, or serve without the broker: "
			                "--no-broker\n",
			        b->plan.ports);
		imp_broker_stop(&b);
		return IMP_ERR_IO;
	}
	fprintf(stderr, "imprint: MQTT on %s\n", b->plan.ports);
	*out = b;
	return IMP_OK;
}

int imp_broker_pid(imp_broker *b)
{
	pthread_mutex_lock(&b->mu);
	int pid = b->pid;
	pthread_mutex_unlock(&b->mu);
	return pid;
}

void imp_broker_stop(imp_broker **bp)
{
	imp_broker *b = bp ? *bp : NULL;
	if(!b) return;
	pthread_mutex_lock(&b->mu);
	b->stopping = 1;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
	pthread_join(b->thread, NULL);
	pthread_mutex_destroy(&b->mu);
	pthread_cond_destroy(&b->cv);
	imp_free(b);
	*bp = NULL;
}
