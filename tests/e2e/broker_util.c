#include "broker_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static int port_open(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
	close(fd);
	return ok;
}

int h_broker_start(h_broker *b, const char *data_dir, const char *log_types)
{
	b->port = (int)h_free_port();
	snprintf(b->conf, sizeof b->conf, "%s/mosquitto.conf", data_dir);
	snprintf(b->log, sizeof b->log, "%s/mosquitto.log", data_dir);
	FILE *f = fopen(b->conf, "w");
	if(!f) return -1;
	/* user: mosquitto started as root drops to user "mosquitto" otherwise, who cannot
	 * read the data directory. */
	struct passwd *pw = getpwuid(getuid());
	const char *plugin = getenv("IMP_TEST_PLUGIN") ? getenv("IMP_TEST_PLUGIN") : IMP_PLUGIN;
	fprintf(f, "listener %d 127.0.0.1\nallow_anonymous false\npersistence false\n"
	           "plugin %s\nplugin_opt_data %s\nlog_dest stderr\nuser %s\n",
	        b->port, plugin, data_dir, pw ? pw->pw_name : "root");
	char types[128];
	snprintf(types, sizeof types, "%s", log_types);
	for(char *save = NULL, *t = strtok_r(types, " ", &save); t; t = strtok_r(NULL, " ", &save))
		fprintf(f, "log_type %s\n", t);
	fclose(f);
	b->pid = fork();
	if(b->pid == 0) {
		int fd = open(b->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 2);
		dup2(fd, 1);
		/* IMP_TEST_BROKER_WRAP (e.g. "valgrind --error-exitcode=9") runs the broker under a
		 * tool, with IMP_TEST_PLUGIN naming a plugin built without sanitizers. */
		const char *wrap = getenv("IMP_TEST_BROKER_WRAP");
		if(wrap) {
			char cmd[1024];
			snprintf(cmd, sizeof cmd, "exec %s %s -c %s", wrap, IMP_MOSQUITTO, b->conf);
			execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
			_exit(127);
		}
#ifdef IMP_PRELOAD
		/* The plugin is built with the sanitizers: their runtime must come first. */
		setenv("LD_PRELOAD", IMP_PRELOAD, 1);
		setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
#endif
		execl(IMP_MOSQUITTO, IMP_MOSQUITTO, "-c", b->conf, (char *)NULL);
		_exit(127);
	}
	for(int i = 0; i < 800; i++) {
		if(port_open(b->port)) return 0;
		usleep(25000);
	}
	char cmd[600];
	snprintf(cmd, sizeof cmd, "cat %s >&2", b->log);
	if(system(cmd)) {}
	return -1;
}

int h_broker_stop(h_broker *b)
{
	if(b->pid <= 0) return 0;
	kill(b->pid, SIGTERM);
	int st = -1;
	waitpid(b->pid, &st, 0);
	b->pid = -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int h_broker_log_has(const h_broker *b, const char *needle)
{
	FILE *f = fopen(b->log, "r");
	if(!f) return 0;
	char line[4096];
	int found = 0;
	while(!found && fgets(line, sizeof line, f)) found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}
