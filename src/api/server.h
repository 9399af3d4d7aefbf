/* Starting and stopping the API server. */
#ifndef IMP_API_SERVER_H
#define IMP_API_SERVER_H
#include "api/http.h"

typedef struct imp_server imp_server;

/* Listens on listen ("HOST:PORT"; port 0 picks a free one) with threads worker threads.
 * Caller stops it with imp_server_stop(). IMP_ERR_BAD_REQUEST for a bad address,
 * IMP_ERR_IO when it cannot listen. */
imp_err imp_server_start(imp_app *app, const char *listen, unsigned threads, imp_server **out);

/* The port it listens on. */
unsigned imp_server_port(const imp_server *srv);

/* Stops accepting, lets requests in flight finish (up to grace_ms), then stops. */
void imp_server_stop(imp_server **srv, unsigned grace_ms);

#endif
