/*
 * example.h: what sender.c and receiver.c share: options, the connection JSON, the frame
 * checksum, signal handling and teardown. Plain C11 + POSIX; included by both examples only.
 */
#ifndef MCM_EXAMPLE_H
#define MCM_EXAMPLE_H

#include <mesh_dp.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes at the start of every frame: the frame index, then the FNV-1a-64 hash of the rest. */
#define HEADER_BYTES 16

/* Set once SIGINT or SIGTERM arrived. */
static atomic_int stopping;

/* Options both examples take. */
struct options {
    const char *group;
    const char *pixel_format;
    unsigned long width, height;
    unsigned long long frames, capacity;
    int audio;
};

static inline struct options default_options(void)
{
    struct options o = {NULL, "yuv422p10rfc4175", 1920, 1080, 0, 16, 0};
    return o;
}

static inline int parse_u64(const char *s, unsigned long long *out)
{
    char *end;
    errno = 0;
    *out = strtoull(s, &end, 10);
    return errno == 0 && *s != '\0' && *s != '-' && *end == '\0';
}

/* Handles option `a` with value `v` if it is a shared one: 1 when taken, 0 when its value is
 * bad, -1 when it is not a shared option. */
static inline int parse_shared_option(struct options *o, const char *a, const char *v)
{
    if (strcmp(a, "--group") == 0) {
        o->group = v;
        return 1;
    } else if (strcmp(a, "--video") == 0) {
        char x;
        return sscanf(v, "%lu%c%lu", &o->width, &x, &o->height) == 3 && x == 'x' && o->width &&
               o->height;
    } else if (strcmp(a, "--pixel-format") == 0) {
        o->pixel_format = v;
        return 1;
    } else if (strcmp(a, "--frames") == 0) {
        return parse_u64(v, &o->frames);
    } else if (strcmp(a, "--capacity") == 0) {
        return parse_u64(v, &o->capacity);
    }
    return -1;
}

/* Checks the group name (it goes into JSON unescaped); prints the usage when it is wrong. */
static inline int check_group(const char *prog, const struct options *o, const char *usage)
{
    if (!o->group || strpbrk(o->group, "\"\\") || o->group[0] == '\0') {
        fprintf(stderr, "%s: --group URN is required (without quotes or backslashes)\n%s", prog,
                usage);
        return 0;
    }
    return 1;
}

/* MCM connection JSON for the options; `fps` > 0 goes into the video payload. */
static inline void connection_json(char *cfg, size_t len, const struct options *o, double fps)
{
    if (o->audio)
        snprintf(cfg, len,
                 "{\"bufferQueueCapacity\": %llu,"
                 " \"connection\": {\"multipointGroup\": {\"urn\": \"%s\"}},"
                 " \"payload\": {\"audio\": {\"channels\": 2, \"sampleRate\": 48000,"
                 " \"format\": \"pcm_s24be\", \"packetTime\": \"1ms\"}}}",
                 o->capacity, o->group);
    else
        snprintf(cfg, len,
                 "{\"bufferQueueCapacity\": %llu,"
                 " \"connection\": {\"multipointGroup\": {\"urn\": \"%s\"}},"
                 " \"payload\": {\"video\": {\"width\": %lu, \"height\": %lu, \"fps\": %g,"
                 " \"pixelFormat\": \"%s\"}}}",
                 o->capacity, o->group, o->width, o->height, fps > 0 ? fps : 60.0,
                 o->pixel_format);
}

static inline uint64_t fnv1a64_words(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h ^= w;
        h *= 0x100000001b3ull;
    }
    for (; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static inline void report(const char *prog, const char *what, int rc)
{
    fprintf(stderr, "%s: %s: %s (%d): %s\n", prog, what, mesh_err2str(rc), rc, mcm_last_error());
}

struct signals {
    sigset_t set;
    MeshConnection *conn;
    pthread_t thread;
};

/* Waits for SIGINT/SIGTERM (stop: shut the connection down, which wakes a blocked get) or
 * SIGUSR1 (the program is done: just return). */
static inline void *signal_thread(void *arg)
{
    struct signals *s = arg;
    int sig = 0;
    while (sigwait(&s->set, &sig) != 0) {
    }
    if (sig != SIGUSR1) {
        atomic_store(&stopping, 1);
        mesh_shutdown_connection(s->conn);
    }
    return NULL;
}

/* Signals are handled by one thread with sigwait(): block them everywhere, before any thread
 * (the SDK's included) starts. */
static inline void block_signals(struct signals *s)
{
    sigemptyset(&s->set);
    sigaddset(&s->set, SIGINT);
    sigaddset(&s->set, SIGTERM);
    sigaddset(&s->set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &s->set, NULL);
}

/* Creates the client and a tx or rx connection, starts the signal thread and prints the ready
 * line. Returns 0, or 1 after reporting what failed (nothing is left open). */
static inline int open_connection(const char *prog, const char *cfg, int tx, struct signals *s,
                                  MeshClient **client, MeshConnection **conn)
{
    int rc = mesh_create_client(client, NULL);
    if (rc) {
        report(prog, "mesh_create_client", rc);
        return 1;
    }
    rc = tx ? mesh_create_tx_connection(*client, conn, cfg)
            : mesh_create_rx_connection(*client, conn, cfg);
    if (rc) {
        report(prog, tx ? "mesh_create_tx_connection" : "mesh_create_rx_connection", rc);
        mesh_delete_client(client);
        return 1;
    }
    if (tx && (*conn)->payload_size < HEADER_BYTES) {
        fprintf(stderr, "%s: payload_size %zu is below %d bytes\n", prog, (*conn)->payload_size,
                HEADER_BYTES);
    } else {
        s->conn = *conn;
        if (pthread_create(&s->thread, NULL, signal_thread, s) == 0)
            return 0;
        fprintf(stderr, "%s: cannot start the signal thread\n", prog);
    }
    mesh_delete_connection(conn);
    mesh_delete_client(client);
    return 1;
}

/* Stops the signal thread and deletes the connection and the client; returns 1 if a delete
 * failed, else `status`. */
static inline int close_connection(const char *prog, struct signals *s, MeshClient **client,
                                   MeshConnection **conn, int status)
{
    pthread_kill(s->thread, SIGUSR1);
    pthread_join(s->thread, NULL);
    int rc = mesh_delete_connection(conn);
    if (rc) {
        report(prog, "mesh_delete_connection", rc);
        status = 1;
    }
    rc = mesh_delete_client(client);
    if (rc) {
        report(prog, "mesh_delete_client", rc);
        status = 1;
    }
    return status;
}

#endif
