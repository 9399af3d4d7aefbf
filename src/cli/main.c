/* imprint: one binary for the server and its tools. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static int usage(void)
{
	fprintf(stderr,
	        "usage: imprint <command> [options]\n"
	        "  init --data DIR [--email ADDRESS] [--json]      create a data directory and its first account\n"
	        "  account create --data DIR [--email ADDRESS] [--json]   add an account with its own admin\n"
	        "  serve --data DIR [--listen HOST:PORT] [--no-broker] [broker options]\n"
	        "                                                  serve the API (default 127.0.0.1:8080) and the\n"
	        "                                                  MQTT broker (1883, 8883, 8884: docs/broker.md)\n"
	        "  routes                                          list the API's routes\n"
	        "  batch --template ID --serials FILE --out FILE [--name NAME] [--format jsonl|csv|nvs|dir]\n"
	        "        [--server URL]                            credential bundles for a file of serial numbers\n");
	return 2;
}

int main(int argc, char **argv)
{
	if(argc < 2) return usage();
	if(sodium_init() < 0) {
		fprintf(stderr, "imprint: libsodium failed to start\n");
		return 1;
	}
	const char *cmd = argv[1];
	if(strcmp(cmd, "init") == 0) return imp_cmd_init(argc - 2, argv + 2);
	if(strcmp(cmd, "account") == 0) return imp_cmd_account(argc - 2, argv + 2);
	if(strcmp(cmd, "serve") == 0) return imp_cmd_serve(argc - 2, argv + 2);
	if(strcmp(cmd, "routes") == 0) return imp_cmd_routes(argc - 2, argv + 2);
	if(strcmp(cmd, "batch") == 0) return imp_cmd_batch(argc - 2, argv + 2);
	return usage();
}
