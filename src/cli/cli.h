/* imprint's verbs. Each returns the process exit status: 0 success, 1 failure,
 * 2 usage errors and refusals (an already initialised data directory). */
#ifndef IMP_CLI_H
#define IMP_CLI_H

int imp_cmd_init(int argc, char **argv);
int imp_cmd_account(int argc, char **argv);
int imp_cmd_serve(int argc, char **argv);
int imp_cmd_routes(int argc, char **argv);
/* imprint batch: 0 every line succeeded, 1 some lines failed, 2 usage or fatal. */
int imp_cmd_batch(int argc, char **argv);

/* The paths inside a data directory. */
#define IMP_DB_FILE "imprint.db"
#define IMP_KEYS_FILE "keys.json"

#endif
