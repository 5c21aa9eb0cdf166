/* The HTTP side shared by lc-web and lc-prometheus: a libmicrohttpd daemon (one thread per
 * connection, so a handler may block on lc_call() and a stream may wait for data), the
 * module's listen/auth/TLS settings read from its config section, basic auth against plain
 * or crypt(3)-hashed passwords, a request body collected up to a limit, the cross-origin
 * check for POST, and small reply helpers. */
#ifndef LC_CLIENTS_HTTPD_H
#define LC_CLIENTS_HTTPD_H

#include "lc.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct httpd httpd_t;
typedef struct httpd_req httpd_req_t;

/* What a module's config section says (see docs/modules/web.md, "Settings"). */
typedef struct {
    char *listen;   /* address to bind: "127.0.0.1" (default), "0.0.0.0", "::", ... */
    int port;       /* TCP port */
    char *username; /* basic auth when both username and password are set */
    char *password; /* plain, or a crypt(3) hash ("$y$...", "$6$...", "$5$...", ...) */
    char *realm;    /* the realm a 401 names */
    char *certfile; /* TLS when both are set (PEM files; relative to the system file) */
    char *keyfile;
    size_t body_max; /* largest request body accepted (413 beyond) */
    int max_connections;
} httpd_config_t;

/* Reads listen, port, username, password, certfile, keyfile, max_body_bytes and
 * max_connections from the client's config section, with default_port and realm.
 * Fills *cfg (free with httpd_config_clear()). */
void httpd_config_read(lc_client_t *client, httpd_config_t *cfg, int default_port,
                       const char *realm);
void httpd_config_clear(httpd_config_t *cfg);

/* A request handler: runs on the connection's own thread once the request (with its body)
 * is in and authenticated. It answers with exactly one httpd_reply*() call; returning
 * without one answers 500. */
typedef void(httpd_handler_fn)(httpd_req_t *req, void *arg);

/* Starts serving. Returns the server, or NULL after writing the reason (what failed, the
 * address and port, and what to do) into err. Caller owns it. */
httpd_t *httpd_start(const httpd_config_t *cfg, lc_client_t *client, httpd_handler_fn *fn,
                     void *arg, char *err, size_t errlen);

/* Stops accepting, waits for the connection threads (a stream's reader must return
 * promptly: see httpd_stopping()), frees, nulls. */
void httpd_destroy(httpd_t **self_p);

/* The port actually bound (useful with port 0 in tests). */
int httpd_port(const httpd_t *self);

/* True once httpd_destroy() has begun: stream readers end their stream. */
bool httpd_stopping(const httpd_t *self);

/* ---- The request ---- */
const char *httpd_method(const httpd_req_t *req); /* "GET", "POST", ... */
const char *httpd_path(const httpd_req_t *req);   /* without the query string */
bool httpd_has_query(const httpd_req_t *req);     /* the URL had a '?' */
const char *httpd_query(const httpd_req_t *req, const char *key); /* NULL if absent */
const char *httpd_header(const httpd_req_t *req, const char *name);
const char *httpd_body(const httpd_req_t *req); /* NUL-terminated; "" without a body */
size_t httpd_body_len(const httpd_req_t *req);
const char *httpd_user(const httpd_req_t *req); /* the authenticated user, or NULL */

/* True when a browser says the request comes from another origin (an Origin header that
 * is not this server's own, or Sec-Fetch-Site: cross-site). POST handlers refuse those. */
bool httpd_cross_origin(const httpd_req_t *req);

/* ---- Answers (each exactly once per request) ---- */
/* body is copied; content_type NULL means "text/plain; charset=utf-8". */
void httpd_reply(httpd_req_t *req, int status, const char *content_type, const char *body,
                 size_t len);
/* Steals json. */
void httpd_reply_json(httpd_req_t *req, int status, json_t *json);
/* {"error": {"code": code, "message": ...}} with the given HTTP status. */
void httpd_reply_error(httpd_req_t *req, int status, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Adds a header to the answer about to be made (before httpd_reply*). */
void httpd_add_header(httpd_req_t *req, const char *name, const char *value);

/* A streamed answer (server-sent events): read is called on the connection's thread to fill
 * buf with at most max bytes; it may block (briefly: it must notice httpd_stopping()) and
 * returns the number of bytes written, 0 to be called again, or -1 to end the stream.
 * done runs once when the connection closes. */
typedef ssize_t(httpd_read_fn)(void *cls, char *buf, size_t max);
typedef void(httpd_done_fn)(void *cls);
void httpd_reply_stream(httpd_req_t *req, const char *content_type, httpd_read_fn *read,
                        httpd_done_fn *done, void *cls);

/* A file from folder (path relative to it, no ".." allowed), with its content type by
 * extension; 404 when missing. */
void httpd_reply_file(httpd_req_t *req, const char *folder, const char *path);

/* Checks a password against a stored one: plain text, or a crypt(3) hash when stored
 * starts with '$'. Constant time in the compared bytes. */
bool httpd_password_ok(const char *stored, const char *given);

#endif
