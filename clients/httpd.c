/* The HTTP side of lc-web and lc-prometheus on libmicrohttpd (see httpd.h). */
#include "httpd.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

struct httpd {
    struct MHD_Daemon *daemon;
    lc_client_t *client;
    httpd_handler_fn *fn;
    void *arg;
    char *username, *password, *realm;
    size_t body_max;
    char *cert, *key; /* PEM text: libmicrohttpd keeps pointers to them */
    atomic_bool stopping;
    int port;
};

struct httpd_req {
    httpd_t *server;
    struct MHD_Connection *conn;
    const char *method;
    char *path;
    char *body;
    size_t len;
    bool too_big;
    bool answered;
    char *user;
    json_t *headers; /* name -> value, added to the answer */
};

typedef struct {
    httpd_t *server;
    httpd_read_fn *read;
    httpd_done_fn *done;
    void *cls;
} stream_t;

/* ---- Settings ---- */

static char *s_dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

void httpd_config_read(lc_client_t *client, httpd_config_t *cfg, int default_port,
                       const char *realm)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->listen = strdup(lc_config_str(client, "listen", "127.0.0.1"));
    cfg->port = (int)lc_config_int(client, "port", default_port);
    cfg->username = s_dup_or_null(lc_config_str(client, "username", NULL));
    cfg->password = s_dup_or_null(lc_config_str(client, "password", NULL));
    cfg->realm = strdup(realm);
    const char *cert = lc_config_str(client, "certfile", NULL);
    if (cert && *cert)
        cfg->certfile = strdup(lc_config_path(client, "certfile", NULL));
    const char *key = lc_config_str(client, "keyfile", NULL);
    if (key && *key)
        cfg->keyfile = strdup(lc_config_path(client, "keyfile", NULL));
    long long max = lc_config_int(client, "max_body_bytes", 1024 * 1024);
    cfg->body_max = max > 0 ? (size_t)max : 1024 * 1024;
    long long conns = lc_config_int(client, "max_connections", 64);
    cfg->max_connections = conns > 0 && conns < 10000 ? (int)conns : 64;
}

void httpd_config_clear(httpd_config_t *cfg)
{
    free(cfg->listen);
    free(cfg->username);
    free(cfg->password);
    free(cfg->realm);
    free(cfg->certfile);
    free(cfg->keyfile);
    memset(cfg, 0, sizeof *cfg);
}

/* ---- Passwords ---- */

static bool s_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = la != lb;
    for (size_t i = 0; i < la && i < lb; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

bool httpd_password_ok(const char *stored, const char *given)
{
    if (!stored || !given)
        return false;
    if (stored[0] != '$')
        return s_equal(stored, given);
    struct crypt_data *data = calloc(1, sizeof *data);
    if (!data)
        return false;
    const char *hash = crypt_r(given, stored, data);
    /* crypt_r answers "*0"/"*1" (or NULL) for a setting it cannot use. */
    bool ok = hash && hash[0] == '$' && s_equal(hash, stored);
    free(data);
    return ok;
}

/* ---- Answers ---- */

static void s_queue(httpd_req_t *req, unsigned status, struct MHD_Response *resp)
{
    if (!resp) {
        lc_log(req->server->client, LC_LOG_ERROR, "http: out of memory answering %s %s",
               req->method, req->path);
        return;
    }
    const char *name;
    json_t *value;
    json_object_foreach(req->headers, name, value)
        MHD_add_response_header(resp, name, json_string_value(value));
    MHD_queue_response(req->conn, status, resp);
    MHD_destroy_response(resp);
    req->answered = true;
}

void httpd_add_header(httpd_req_t *req, const char *name, const char *value)
{
    json_object_set_new(req->headers, name, json_string(value));
}

void httpd_reply(httpd_req_t *req, int status, const char *content_type, const char *body,
                 size_t len)
{
    if (req->answered)
        return;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                content_type ? content_type : "text/plain; charset=utf-8");
    s_queue(req, (unsigned)status, resp);
}

void httpd_reply_json(httpd_req_t *req, int status, json_t *json)
{
    char *text = json ? json_dumps(json, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    json_decref(json);
    if (!text) {
        httpd_reply(req, 500, NULL, "out of memory\n", 14);
        return;
    }
    size_t len = strlen(text);
    char *line = realloc(text, len + 2);
    if (line) {
        text = line;
        text[len++] = '\n';
        text[len] = '\0';
    }
    httpd_reply(req, status, "application/json", text, len);
    free(text);
}

void httpd_reply_error(httpd_req_t *req, int status, int code, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    httpd_reply_json(req, status,
                     json_pack("{s:{s:i, s:s}}", "error", "code", code, "message", message));
}

static ssize_t s_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream_t *st = cls;
    for (;;) {
        if (atomic_load(&st->server->stopping))
            return MHD_CONTENT_READER_END_OF_STREAM;
        ssize_t n = st->read(st->cls, buf, max);
        if (n < 0)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (n > 0)
            return n;
    }
}

static void s_stream_free(void *cls)
{
    stream_t *st = cls;
    if (st->done)
        st->done(st->cls);
    free(st);
}

void httpd_reply_stream(httpd_req_t *req, const char *content_type, httpd_read_fn *read,
                        httpd_done_fn *done, void *cls)
{
    stream_t *st = calloc(1, sizeof *st);
    if (!st) {
        if (done)
            done(cls);
        httpd_reply(req, 500, NULL, "out of memory\n", 14);
        return;
    }
    *st = (stream_t){req->server, read, done, cls};
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, s_stream_read, st, s_stream_free);
    if (!resp) {
        s_stream_free(st);
        httpd_reply(req, 500, NULL, "out of memory\n", 14);
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    s_queue(req, 200, resp);
}

static const char *s_content_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"}, {".json", "application/json"},
        {".png", "image/png"}, {".svg", "image/svg+xml"}, {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

void httpd_reply_file(httpd_req_t *req, const char *folder, const char *path)
{
    /* Only plain names below folder: no "..", no hidden files, no absolute paths. */
    bool safe = *path && *path != '/' && !strstr(path, "..") && !strstr(path, "/.") &&
                *path != '.' && !strchr(path, '\\');
    char file[4096];
    int fd = -1;
    struct stat st;
    if (safe && snprintf(file, sizeof file, "%s/%s", folder, path) < (int)sizeof file)
        fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        fd = -1;
    }
    if (fd < 0) {
        httpd_reply_error(req, 404, 404, "no such file: /%s", path);
        return;
    }
    struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
    if (!resp) {
        close(fd);
        httpd_reply(req, 500, NULL, "out of memory\n", 14);
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, s_content_type(path));
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    s_queue(req, 200, resp);
}

/* ---- The request ---- */

const char *httpd_method(const httpd_req_t *req)
{
    return req->method;
}

const char *httpd_path(const httpd_req_t *req)
{
    return req->path;
}

bool httpd_has_query(const httpd_req_t *req)
{
    return MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, NULL, NULL) > 0;
}

const char *httpd_query(const httpd_req_t *req, const char *key)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *httpd_header(const httpd_req_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *httpd_body(const httpd_req_t *req)
{
    return req->body ? req->body : "";
}

size_t httpd_body_len(const httpd_req_t *req)
{
    return req->len;
}

const char *httpd_user(const httpd_req_t *req)
{
    return req->user;
}

/* "http://host:port" or "https://host:port" from a browser's Origin header, compared with
 * the Host header the same request carries. */
bool httpd_cross_origin(const httpd_req_t *req)
{
    const char *site = httpd_header(req, "Sec-Fetch-Site");
    if (site && strcmp(site, "cross-site") == 0)
        return true;
    const char *origin = httpd_header(req, "Origin");
    if (!origin)
        return false;
    const char *host = httpd_header(req, "Host");
    const char *sep = strstr(origin, "://");
    if (!host || !sep)
        return true; /* "null" origins (files, sandboxes) and the like */
    return strcmp(sep + 3, host) != 0;
}

/* ---- The daemon ---- */

static bool s_authorized(httpd_req_t *req)
{
    httpd_t *self = req->server;
    if (!self->username || !self->password)
        return true;
    if (!httpd_header(req, MHD_HTTP_HEADER_AUTHORIZATION)) {
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (resp) {
            MHD_queue_basic_auth_fail_response(req->conn, self->realm, resp);
            MHD_destroy_response(resp);
            req->answered = true;
        }
        return false;
    }
    char *pass = NULL;
    char *user = MHD_basic_auth_get_username_password(req->conn, &pass);
    bool ok = user && pass && s_equal(user, self->username) &&
              httpd_password_ok(self->password, pass);
    if (ok)
        req->user = strdup(user);
    else
        httpd_reply(req, 403, NULL, "forbidden: wrong user name or password\n", 39);
    if (user)
        MHD_free(user);
    if (pass)
        MHD_free(pass);
    return ok;
}

static enum MHD_Result s_access(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version,
                                const char *upload_data, size_t *upload_data_size,
                                void **con_cls)
{
    (void)version;
    httpd_t *self = cls;
    httpd_req_t *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req)
            return MHD_NO;
        req->server = self;
        req->conn = conn;
        req->method = method;
        req->path = strdup(url);
        req->headers = json_object();
        *con_cls = req;
        if (!req->path || !req->headers)
            return MHD_NO;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->too_big || req->len + n > self->body_max) {
            req->too_big = true; /* read it all, answer once it is in */
            return MHD_YES;
        }
        char *body = realloc(req->body, req->len + n + 1);
        if (!body)
            return MHD_NO;
        memcpy(body + req->len, upload_data, n);
        req->body = body;
        req->len += n;
        req->body[req->len] = '\0';
        return MHD_YES;
    }
    if (req->answered)
        return MHD_YES;
    if (!s_authorized(req))
        return req->answered ? MHD_YES : MHD_NO;
    if (req->too_big) {
        httpd_reply_error(req, 413, 413, "request body larger than %zu bytes (max_body_bytes)",
                          self->body_max);
        return MHD_YES;
    }
    self->fn(req, self->arg);
    if (!req->answered)
        httpd_reply_error(req, 500, 500, "%s %s: the handler gave no answer", req->method,
                          req->path);
    return req->answered ? MHD_YES : MHD_NO;
}

static void s_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                        enum MHD_RequestTerminationCode code)
{
    (void)cls, (void)conn, (void)code;
    httpd_req_t *req = *con_cls;
    if (!req)
        return;
    free(req->path);
    free(req->body);
    free(req->user);
    json_decref(req->headers);
    free(req);
    *con_cls = NULL;
}

static void s_log(void *cls, const char *fmt, va_list ap)
{
    httpd_t *self = cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    lc_log(self->client, LC_LOG_WARNING, "http: %s", line);
}

static char *s_read_file(const char *path, char *err, size_t errlen, const char *what)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read the %s %s: %s (check %s in the config)", what, path,
                 strerror(errno), what);
        return NULL;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *more = realloc(text, cap);
            if (!more) {
                free(text);
                fclose(f);
                snprintf(err, errlen, "out of memory reading %s", path);
                return NULL;
            }
            text = more;
        }
        memcpy(text + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (!text) {
        snprintf(err, errlen, "the %s %s is empty", what, path);
        return NULL;
    }
    text[len] = '\0';
    return text;
}

httpd_t *httpd_start(const httpd_config_t *cfg, lc_client_t *client, httpd_handler_fn *fn,
                     void *arg, char *err, size_t errlen)
{
    if (cfg->port < 0 || cfg->port > 65535) {
        snprintf(err, errlen, "port %d is not a TCP port (0-65535)", cfg->port);
        return NULL;
    }
    if ((cfg->certfile != NULL) != (cfg->keyfile != NULL)) {
        snprintf(err, errlen, "TLS needs both certfile and keyfile; only %s is set",
                 cfg->certfile ? "certfile" : "keyfile");
        return NULL;
    }
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_PASSIVE,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    int rc = getaddrinfo(cfg->listen, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "listen address '%s' is not a numeric IPv4 or IPv6 address (%s)",
                 cfg->listen, gai_strerror(rc));
        return NULL;
    }
    httpd_t *self = calloc(1, sizeof *self);
    if (!self) {
        freeaddrinfo(ai);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->client = client;
    self->fn = fn;
    self->arg = arg;
    self->username = s_dup_or_null(cfg->username);
    self->password = s_dup_or_null(cfg->password);
    self->realm = strdup(cfg->realm ? cfg->realm : "lc");
    self->body_max = cfg->body_max;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (cfg->certfile) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            snprintf(err, errlen, "this libmicrohttpd has no TLS; remove certfile and keyfile");
            goto fail;
        }
        self->cert = s_read_file(cfg->certfile, err, errlen, "certfile");
        if (!self->cert)
            goto fail;
        self->key = s_read_file(cfg->keyfile, err, errlen, "keyfile");
        if (!self->key)
            goto fail;
        flags |= MHD_USE_TLS;
    }
    struct MHD_OptionItem tls[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, self->cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, self->key},
        {MHD_OPTION_END, 0, NULL},
    };
    /* The logger goes first: libmicrohttpd complains otherwise (through the logger). */
    self->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, s_access, self, MHD_OPTION_EXTERNAL_LOGGER, s_log,
        self, MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_NOTIFY_COMPLETED, s_completed, self,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_ARRAY,
        cfg->certfile ? tls : tls + 2, MHD_OPTION_END);
    if (!self->daemon) {
        snprintf(err, errlen,
                 "cannot serve HTTP%s on %s port %d (in use, not an address of this host, or "
                 "a bad certificate); change listen/port in the config",
                 cfg->certfile ? "S" : "", cfg->listen, cfg->port);
        goto fail;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_BIND_PORT);
    self->port = info ? info->port : cfg->port;
    freeaddrinfo(ai);
    return self;
fail:
    freeaddrinfo(ai);
    httpd_destroy(&self);
    return NULL;
}

void httpd_destroy(httpd_t **self_p)
{
    httpd_t *self = *self_p;
    if (!self)
        return;
    atomic_store(&self->stopping, true);
    if (self->daemon)
        MHD_stop_daemon(self->daemon);
    free(self->username);
    free(self->password);
    free(self->realm);
    free(self->cert);
    free(self->key);
    free(self);
    *self_p = NULL;
}

int httpd_port(const httpd_t *self)
{
    return self->port;
}

bool httpd_stopping(const httpd_t *self)
{
    return atomic_load(&self->stopping);
}
