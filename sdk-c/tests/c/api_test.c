/*
 * api_test.c: every function of mesh_dp.h and every error path of the MCM reference, against a
 * real mcm engine.
 *
 * Run by engine/tests/c_api.rs, built with -fsanitize=address,undefined -Wall -Wextra -Werror.
 * The engine is found as an MCM application finds it: MCM_MEDIA_PROXY_PORT (and
 * MCM_MEDIA_PROXY_IP) for TCP, or MCM_SDK_UNIX_SOCKET for the engine's Unix socket.
 *
 * The first failed check prints file:line, the call, what it returned and mcm_last_error(), and
 * exits with status 1 (without running the leak check, whose report would only add noise).
 * Prints "ok <section>" per section and "api_test: all passed" at the end.
 */
#define _POSIX_C_SOURCE 200809L

#include <mesh_dp.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the layout and qualifiers of the public structs (MCM's) -------------------------- */

_Static_assert(offsetof(MeshConnection, client) == 0, "MeshConnection.client");
_Static_assert(offsetof(MeshConnection, payload_size) == 8, "MeshConnection.payload_size");
_Static_assert(offsetof(MeshConnection, metadata_size) == 16, "MeshConnection.metadata_size");
_Static_assert(sizeof(MeshConnection) == 24, "sizeof(MeshConnection)");
_Static_assert(offsetof(MeshBuffer, conn) == 0, "MeshBuffer.conn");
_Static_assert(offsetof(MeshBuffer, payload_ptr) == 8, "MeshBuffer.payload_ptr");
_Static_assert(offsetof(MeshBuffer, payload_len) == 16, "MeshBuffer.payload_len");
_Static_assert(offsetof(MeshBuffer, metadata_ptr) == 24, "MeshBuffer.metadata_ptr");
_Static_assert(offsetof(MeshBuffer, metadata_len) == 32, "MeshBuffer.metadata_len");
_Static_assert(sizeof(MeshBuffer) == 40, "sizeof(MeshBuffer)");
/* Read-only for applications, as in MCM. */
_Static_assert(_Generic(&((MeshBuffer *)0)->payload_len, const size_t *: 1, default: 0),
               "MeshBuffer.payload_len is const");
_Static_assert(_Generic(&((MeshBuffer *)0)->payload_ptr, void *const *: 1, default: 0),
               "MeshBuffer.payload_ptr is a const pointer");
_Static_assert(_Generic(&((MeshConnection *)0)->payload_size, const size_t *: 1, default: 0),
               "MeshConnection.payload_size is const");

/* ---- checks ------------------------------------------------------------------------- */

static void fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  mcm_last_error: %s\n", mcm_last_error());
    fflush(stdout);
    fflush(stderr);
    _Exit(1);
}

/* A condition that must hold. */
#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond))                                                                        \
            fail(__FILE__, __LINE__, "CHECK(%s) failed", #cond);                            \
    } while (0)

/* A call that must return `want` (0 or a negative code). */
#define CHECK_RC(call, want)                                                                \
    do {                                                                                    \
        int rc_ = (call);                                                                   \
        int want_ = (want);                                                                 \
        if (rc_ != want_)                                                                   \
            fail(__FILE__, __LINE__, "%s returned %d (%s), expected %d (%s)", #call, rc_,  \
                 mesh_err2str(rc_), want_, mesh_err2str(want_));                            \
    } while (0)

#define OK(call) CHECK_RC(call, 0)

static void section_ok(const char *name)
{
    printf("ok %s\n", name);
    fflush(stdout);
}

/* ---- helpers ------------------------------------------------------------------------ */

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* printf into `out`; the JSON must fit. */
static const char *jfmt(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    CHECK(len > 0 && (size_t)len < n);
    return out;
}

static MeshClient *new_client(const char *cfg)
{
    MeshClient *mc = NULL;
    OK(mesh_create_client(&mc, cfg));
    CHECK(mc != NULL);
    return mc;
}

static MeshConnection *new_conn(MeshClient *mc, int tx, const char *cfg)
{
    MeshConnection *conn = NULL;
    if (tx)
        OK(mesh_create_tx_connection(mc, &conn, cfg));
    else
        OK(mesh_create_rx_connection(mc, &conn, cfg));
    CHECK(conn != NULL);
    CHECK(conn->client == mc);
    return conn;
}

static void del_conn(MeshConnection **conn)
{
    OK(mesh_delete_connection(conn));
    CHECK(*conn == NULL);
}

static void del_client(MeshClient **mc)
{
    OK(mesh_delete_client(mc));
    CHECK(*mc == NULL);
}

/* A small video group: 64x32 yuv422p10rfc4175 = 5120 bytes per frame. */
static const char *video_json(char *out, size_t n, const char *urn, int capacity, int max_meta)
{
    return jfmt(out, n,
                "{\"bufferQueueCapacity\": %d, \"maxMetadataSize\": %d,"
                " \"connection\": {\"multipointGroup\": {\"urn\": \"%s\"}},"
                " \"payload\": {\"video\": {\"width\": 64, \"height\": 32,"
                " \"pixelFormat\": \"yuv422p10rfc4175\"}}}",
                capacity, max_meta, urn);
}

#define SMALL_FRAME 5120u

/* Memory that is not a handle: aligned, large enough for every magic, filled with 0x55. */
static uint64_t fake_handle[16];

/* ---- constants and mesh_err2str ----------------------------------------------------- */

static void test_constants(void)
{
    CHECK(strcmp(MESH_VERSION, "25.03") == 0);
    CHECK(MESH_VERSION_MAJOR == 25 && MESH_VERSION_MINOR == 3 && MESH_VERSION_HOTFIX == 0);
    CHECK(MESH_TIMEOUT_DEFAULT == -2);
    CHECK(MESH_TIMEOUT_INFINITE == -1);
    CHECK(MESH_TIMEOUT_ZERO == 0);
    const int codes[] = {
        MESH_ERR_BAD_CLIENT_PTR,       MESH_ERR_BAD_CONN_PTR,      MESH_ERR_BAD_CONFIG_PTR,
        MESH_ERR_BAD_BUF_PTR,          MESH_ERR_BAD_BUF_LEN,       MESH_ERR_CLIENT_CONFIG_INVAL,
        MESH_ERR_MAX_CONN,             MESH_ERR_FOUND_ALLOCATED,   MESH_ERR_CONN_FAILED,
        MESH_ERR_CONN_CONFIG_INVAL,    MESH_ERR_CONN_CONFIG_INCOMPAT, MESH_ERR_CONN_CLOSED,
        MESH_ERR_TIMEOUT,              MESH_ERR_NOT_IMPLEMENTED,
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        CHECK(codes[i] == 1000 + (int)i);
    CHECK(MESH_ERR_TIMEOUT == 1012 && MESH_ERR_NOT_IMPLEMENTED == 1013);
    section_ok("constants");
}

static void test_err2str(void)
{
    static const struct {
        int code;
        const char *text;
    } texts[] = {
        {MESH_ERR_BAD_CLIENT_PTR, "Bad client pointer"},
        {MESH_ERR_BAD_CONN_PTR, "Bad connection pointer"},
        {MESH_ERR_BAD_CONFIG_PTR, "Bad configuration pointer"},
        {MESH_ERR_BAD_BUF_PTR, "Bad buffer pointer"},
        {MESH_ERR_BAD_BUF_LEN, "Bad buffer length"},
        {MESH_ERR_CLIENT_CONFIG_INVAL, "Invalid parameters in client configuration"},
        {MESH_ERR_MAX_CONN, "Reached max number of connections"},
        {MESH_ERR_FOUND_ALLOCATED, "Found allocated resources"},
        {MESH_ERR_CONN_FAILED, "Connection creation failed"},
        {MESH_ERR_CONN_CONFIG_INVAL, "Invalid parameters in connection configuration"},
        {MESH_ERR_CONN_CONFIG_INCOMPAT, "Incompatible parameters in connection configuration"},
        {MESH_ERR_CONN_CLOSED, "Connection is closed"},
        {MESH_ERR_TIMEOUT, "Timeout occurred"},
        {MESH_ERR_NOT_IMPLEMENTED, "Feature not implemented yet"},
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        const char *neg = mesh_err2str(-texts[i].code);
        const char *pos = mesh_err2str(texts[i].code);
        CHECK(neg != NULL && pos != NULL);
        if (strcmp(neg, texts[i].text) != 0 || strcmp(pos, texts[i].text) != 0)
            fail(__FILE__, __LINE__, "mesh_err2str(+-%d) = \"%s\" / \"%s\", expected \"%s\"",
                 texts[i].code, neg, pos, texts[i].text);
        /* Static strings: the same pointer every time. */
        CHECK(mesh_err2str(-texts[i].code) == neg);
    }
    const int unknown[] = {1, -1, 999, -999, 1014, -1014, 5000, INT_MAX, INT_MIN, -INT_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *s = mesh_err2str(unknown[i]);
        if (strcmp(s, "Unknown error code") != 0)
            fail(__FILE__, __LINE__, "mesh_err2str(%d) = \"%s\"", unknown[i], s);
    }
    CHECK(strcmp(mesh_err2str(0), "Success") == 0);
    CHECK(strcmp(mesh_err2str(-ENOMEM), "Out of memory") == 0);
    CHECK(strcmp(mesh_err2str(ENOMEM), "Out of memory") == 0);
    CHECK(strcmp(mesh_err2str(-EINVAL), "Invalid argument") == 0);
    section_ok("err2str");
}

/* ---- client configuration ----------------------------------------------------------- */

static void test_client_config(void)
{
    MeshClient *mc;
    /* NULL, empty and blank mean all defaults (the proxy address from the environment). */
    const char *defaults[] = {NULL, "", "  \n ", "{}", "{\"apiVersion\": \"v1\"}",
                              "{\"someFutureField\": {\"nested\": [1, 2]}, \"x\": null}",
                              "{\"apiDefaultTimeoutMicroseconds\": 0, \"maxMediaConnections\": 1}"};
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        mc = new_client(defaults[i]);
        del_client(&mc);
    }
    if (!getenv("MCM_SDK_UNIX_SOCKET")) {
        char cfg[256];
        const char *port = getenv("MCM_MEDIA_PROXY_PORT");
        CHECK(port != NULL);
        mc = new_client(jfmt(cfg, sizeof cfg,
                             "{\"apiConnectionString\": \"Server=127.0.0.1; Port=%s\"}", port));
        del_client(&mc);
    }

    static const char *const invalid[] = {
        "{\"apiVersion\": 1}",
        "{\"apiVersion\": \"v2\"}",
        "{\"apiConnectionString\": 8002}",
        "{\"apiConnectionString\": \"Server=127.0.0.1; Port=http\"}",
        "{\"apiConnectionString\": \"Host=127.0.0.1\"}",
        "{\"apiDefaultTimeoutMicroseconds\": \"1000\"}",
        "{\"apiDefaultTimeoutMicroseconds\": -1}",
        "{\"apiDefaultTimeoutMicroseconds\": 1.5}",
        "{\"maxMediaConnections\": true}",
        "{\"maxMediaConnections\": 0}",
        "{\"maxMediaConnections\": \"32\"}",
        "{",
        "[]",
        "\"v1\"",
        "{\"apiVersion\": \"v1\",}",
        "{\"apiVersion\": \"\xff\xfe\"}", /* invalid UTF-8 */
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        mc = (MeshClient *)fake_handle; /* must stay untouched */
        int rc = mesh_create_client(&mc, invalid[i]);
        if (rc != -MESH_ERR_CLIENT_CONFIG_INVAL)
            fail(__FILE__, __LINE__, "mesh_create_client(%s) = %d (%s)", invalid[i], rc,
                 mesh_err2str(rc));
        CHECK(mc == (MeshClient *)fake_handle);
        CHECK(strstr(mcm_last_error(), "mesh_create_client: ") == mcm_last_error());
    }

    /* A bad environment fallback is a configuration error too. */
    char *saved = getenv("MCM_MEDIA_PROXY_PORT") ? strdup(getenv("MCM_MEDIA_PROXY_PORT")) : NULL;
    setenv("MCM_MEDIA_PROXY_PORT", "http", 1);
    mc = NULL;
    CHECK_RC(mesh_create_client(&mc, NULL), -MESH_ERR_CLIENT_CONFIG_INVAL);
    CHECK(mc == NULL);
    CHECK(strstr(mcm_last_error(), "MCM_MEDIA_PROXY_PORT") != NULL);
    if (saved)
        setenv("MCM_MEDIA_PROXY_PORT", saved, 1);
    else
        unsetenv("MCM_MEDIA_PROXY_PORT");
    free(saved);

    /* An unreachable media proxy. */
    const char *unix_sock = getenv("MCM_SDK_UNIX_SOCKET");
    if (unix_sock) {
        char *keep = strdup(unix_sock);
        setenv("MCM_SDK_UNIX_SOCKET", "/nonexistent/mcm-api-test.sock", 1);
        CHECK_RC(mesh_create_client(&mc, NULL), -MESH_ERR_CONN_FAILED);
        setenv("MCM_SDK_UNIX_SOCKET", keep, 1);
        free(keep);
    } else {
        CHECK_RC(mesh_create_client(&mc, "{\"apiConnectionString\": \"Server=127.0.0.1; Port=1\"}"),
                 -MESH_ERR_CONN_FAILED);
    }
    CHECK(mc == NULL);
    section_ok("client_config");
}

/* ---- connection configuration ------------------------------------------------------- */

#define G "\"connection\": {\"multipointGroup\": {\"urn\": \"cfg-test\"}}"
#define V "\"payload\": {\"video\": {\"width\": 64, \"height\": 32, \"pixelFormat\": \"yuv422p10rfc4175\"}}"
#define ST20 "\"connection\": {\"st2110\": {\"transport\": \"st2110-20\", \"ipAddr\": \"239.1.1.1\", \"port\": 20000}}"
#define ST30 "\"connection\": {\"st2110\": {\"transport\": \"st2110-30\", \"ipAddr\": \"239.1.1.2\", \"port\": 20002}}"
#define AUDIO(rate, ptime) \
    "\"payload\": {\"audio\": {\"channels\": 2, \"sampleRate\": " rate ", \"format\": \"pcm_s24be\", \"packetTime\": \"" ptime "\"}}"

static void test_conn_config(void)
{
    static const struct {
        const char *json;
        int want;
    } bad[] = {
        /* wrong types */
        {"{\"bufferQueueCapacity\": \"16\", " G ", " V "}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{\"maxPayloadSize\": \"1024\", " G ", " V "}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{\"maxPayloadSize\": -1, " G ", " V "}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{\"maxMetadataSize\": 1.5, " G ", " V "}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{\"connCreationDelayMilliseconds\": \"5\", " G ", " V "}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{\"connection\": {\"multipointGroup\": {\"urn\": 5}}, " V "}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{\"connection\": [], " V "}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{" G ", \"payload\": {\"video\": {\"width\": \"640\"}}}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{" G ", \"payload\": {\"video\": {\"height\": -1}}}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{" G ", \"payload\": {\"video\": {\"fps\": \"60\"}}}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{" G ", \"payload\": {\"video\": {\"pixelFormat\": 1}}}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{" G ", \"payload\": {\"audio\": {\"channels\": \"2\"}}}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{" G ", \"payload\": {\"audio\": {\"sampleRate\": \"48000\"}}}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{" G ", \"payload\": {\"audio\": {\"packetTime\": 1}}}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{" G ", \"payload\": {\"blob\": []}, \"maxPayloadSize\": 64}", -MESH_ERR_CONN_CONFIG_INVAL},
        /* invalid values and sizes */
        {"{\"bufferQueueCapacity\": 3, " G ", " V "}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{\"bufferQueueCapacity\": 0, " G ", " V "}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{\"bufferQueueCapacity\": 1, " G ", " V "}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{\"bufferQueueCapacity\": 256, " G ", " V "}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{\"bufferQueueCapacity\": 48, " G ", " V "}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{" G ", \"payload\": {\"video\": {\"width\": 0}}}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{" G ", \"payload\": {\"video\": {\"fps\": 0}}}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{" G ", \"payload\": {\"video\": {\"pixelFormat\": \"rgb24\"}}}", -MESH_ERR_CONN_CONFIG_INVAL},
        /* v210: w*h*8 must divide by 3 (1*1*8 and 1921*1*8 do not) */
        {"{" G ", \"payload\": {\"video\": {\"width\": 1, \"height\": 1, \"pixelFormat\": \"v210\"}}}",
         -MESH_ERR_CONN_CONFIG_INVAL},
        {"{" G ", \"payload\": {\"video\": {\"width\": 1921, \"height\": 1, \"pixelFormat\": \"v210\"}}}",
         -MESH_ERR_CONN_CONFIG_INVAL},
        /* yuv422p10rfc4175: w*h must be even */
        {"{" G ", \"payload\": {\"video\": {\"width\": 3, \"height\": 3, \"pixelFormat\": \"yuv422p10rfc4175\"}}}",
         -MESH_ERR_CONN_CONFIG_INVAL},
        {"{" G ", \"payload\": {\"audio\": {\"channels\": 0}}}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{" G ", \"payload\": {\"audio\": {\"sampleRate\": 22050}}}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{" G ", \"payload\": {\"audio\": {\"format\": \"pcm_f32le\"}}}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{" G ", \"payload\": {\"audio\": {\"packetTime\": \"2ms\"}}}", -MESH_ERR_CONN_CONFIG_INVAL},
        /* blob without maxPayloadSize (also: no payload at all means blob) */
        {"{" G ", \"payload\": {\"blob\": {}}}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{" G "}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{\"maxPayloadSize\": 0, " G ", \"payload\": {\"blob\": {}}}", -MESH_ERR_CONN_CONFIG_INVAL},
        /* no connection, two connections */
        {"{" V "}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{\"connection\": {\"multipointGroup\": {\"urn\": \"a\"}, \"rdma\": {}}, " V "}",
         -MESH_ERR_CONN_CONFIG_INVAL},
        /* malformed */
        {"", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{", -MESH_ERR_CONN_CONFIG_INVAL},
        {"[]", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{" G ", " V ",}", -MESH_ERR_CONN_CONFIG_INVAL},
        {"{\"connection\": {\"multipointGroup\": {\"urn\": \"\xc3\x28\"}}, " V "}",
         -MESH_ERR_CONN_CONFIG_INVAL}, /* invalid UTF-8 */
        /* fields that do not fit together */
        {"{" G ", " AUDIO("44100", "1ms") "}", -MESH_ERR_CONN_CONFIG_INCOMPAT},
        {"{" G ", " AUDIO("44100", "125us") "}", -MESH_ERR_CONN_CONFIG_INCOMPAT},
        {"{" G ", " AUDIO("48000", "1.09ms") "}", -MESH_ERR_CONN_CONFIG_INCOMPAT},
        {"{" G ", " AUDIO("96000", "0.14ms") "}", -MESH_ERR_CONN_CONFIG_INCOMPAT},
        {"{\"maxPayloadSize\": 100, " G ", " V "}", -MESH_ERR_CONN_CONFIG_INCOMPAT},
        {"{\"maxPayloadSize\": 100, " ST20 ", \"payload\": {\"blob\": {}}}", -MESH_ERR_CONN_CONFIG_INCOMPAT},
        {"{" ST30 ", " V "}", -MESH_ERR_CONN_CONFIG_INCOMPAT},
        {"{" ST20 ", " AUDIO("48000", "1ms") "}", -MESH_ERR_CONN_CONFIG_INCOMPAT},
    };
    MeshClient *mc = new_client(NULL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int tx = 0; tx <= 1; tx++) {
            MeshConnection *conn = (MeshConnection *)fake_handle; /* must stay untouched */
            int rc = tx ? mesh_create_tx_connection(mc, &conn, bad[i].json)
                        : mesh_create_rx_connection(mc, &conn, bad[i].json);
            if (rc != bad[i].want)
                fail(__FILE__, __LINE__, "mesh_create_%s_connection(%s) = %d (%s), expected %d (%s)",
                     tx ? "tx" : "rx", bad[i].json, rc, mesh_err2str(rc), bad[i].want,
                     mesh_err2str(bad[i].want));
            CHECK(conn == (MeshConnection *)fake_handle);
            CHECK(mcm_last_error()[0] != '\0');
        }
    }
    /* A message names the field. */
    MeshConnection *conn = NULL;
    CHECK_RC(mesh_create_rx_connection(mc, &conn, bad[0].json), -MESH_ERR_CONN_CONFIG_INVAL);
    CHECK(strstr(mcm_last_error(), "bufferQueueCapacity") != NULL);
    CHECK_RC(mesh_create_rx_connection(mc, &conn, "{" G ", " AUDIO("44100", "1ms") "}"),
             -MESH_ERR_CONN_CONFIG_INCOMPAT);
    CHECK(strstr(mcm_last_error(), "packetTime") != NULL);

    /* Valid, but transports the engine does not serve yet. */
    static const char *const not_served[] = {
        "{\"connection\": {\"rdma\": {\"connectionMode\": \"RC\"}}, " V "}",
    };
    for (size_t i = 0; i < sizeof not_served / sizeof not_served[0]; i++) {
        conn = NULL;
        CHECK_RC(mesh_create_tx_connection(mc, &conn, not_served[i]), -MESH_ERR_NOT_IMPLEMENTED);
        CHECK(conn == NULL);
        CHECK_RC(mesh_create_rx_connection(mc, &conn, not_served[i]), -MESH_ERR_NOT_IMPLEMENTED);
        CHECK(conn == NULL);
    }

    /* A group carries one size and has at most one sender (refused by the engine). */
    char j1[512], j2[512];
    MeshConnection *rx = new_conn(mc, 0, video_json(j1, sizeof j1, "cfg-group", 4, 0));
    const char *other = jfmt(j2, sizeof j2,
                             "{\"connection\": {\"multipointGroup\": {\"urn\": \"cfg-group\"}},"
                             " \"payload\": {\"video\": {\"width\": 128, \"height\": 32,"
                             " \"pixelFormat\": \"yuv422p10rfc4175\"}}}");
    conn = NULL;
    CHECK_RC(mesh_create_rx_connection(mc, &conn, other), -MESH_ERR_CONN_CONFIG_INCOMPAT);
    CHECK(conn == NULL);
    MeshConnection *tx = new_conn(mc, 1, j1);
    CHECK_RC(mesh_create_tx_connection(mc, &conn, j1), -MESH_ERR_CONN_CONFIG_INCOMPAT);
    CHECK(conn == NULL);
    del_conn(&tx);
    del_conn(&rx);

    /* Every refused connection was given back: the client has none left. */
    del_client(&mc);
    section_ok("conn_config");
}

/* ---- payload sizes ------------------------------------------------------------------ */

static void test_sizes(void)
{
    static const struct {
        const char *payload;
        int max_payload, max_meta;
        size_t size;
    } cases[] = {
        {"{\"video\": {}}", 0, 0, 640 * 640 * 4}, /* defaults: 640x640 yuv422p10le */
        {"{\"video\": {\"width\": 1920, \"height\": 1080, \"pixelFormat\": \"yuv422p10le\"}}", 0, 0,
         1920 * 1080 * 4},
        {"{\"video\": {\"width\": 1920, \"height\": 1080, \"pixelFormat\": \"v210\"}}", 0, 0,
         1920 * 1080 * 8 / 3},
        {"{\"video\": {\"width\": 1920, \"height\": 1080, \"pixelFormat\": \"yuv422p10rfc4175\"}}", 0,
         0, 1920 * 1080 * 5 / 2},
        {"{\"video\": {\"width\": 3, \"height\": 1, \"pixelFormat\": \"v210\"}}", 0, 0, 8},
        {"{\"video\": {\"width\": 64, \"height\": 32, \"pixelFormat\": \"yuv422p10rfc4175\"}}", 10000,
         16, 10000},
        {"{\"audio\": {}}", 0, 0, 288}, /* defaults: 48 kHz, 2 ch, pcm_s24be, 1ms */
        {"{\"audio\": {\"channels\": 2, \"sampleRate\": 48000, \"format\": \"pcm_s24be\","
         " \"packetTime\": \"1ms\"}}", 0, 0, 48 * 2 * 3},
        {"{\"audio\": {\"channels\": 2, \"sampleRate\": 96000, \"format\": \"pcm_s24be\","
         " \"packetTime\": \"1ms\"}}", 0, 0, 96 * 2 * 3},
        {"{\"audio\": {\"channels\": 2, \"sampleRate\": 48000, \"format\": \"pcm_s16be\","
         " \"packetTime\": \"125us\"}}", 0, 0, 6 * 2 * 2},
        {"{\"audio\": {\"channels\": 2, \"sampleRate\": 48000, \"format\": \"pcm_s24be\","
         " \"packetTime\": \"250us\"}}", 0, 0, 12 * 2 * 3},
        {"{\"audio\": {\"channels\": 2, \"sampleRate\": 48000, \"format\": \"pcm_s24be\","
         " \"packetTime\": \"333us\"}}", 0, 0, 16 * 2 * 3},
        {"{\"audio\": {\"channels\": 8, \"sampleRate\": 96000, \"format\": \"pcm_s24be\","
         " \"packetTime\": \"4ms\"}}", 0, 0, 384 * 8 * 3},
        {"{\"audio\": {\"channels\": 2, \"sampleRate\": 48000, \"format\": \"pcm_s16be\","
         " \"packetTime\": \"80us\"}}", 0, 0, 4 * 2 * 2},
        {"{\"audio\": {\"channels\": 2, \"sampleRate\": 44100, \"format\": \"pcm_s24be\","
         " \"packetTime\": \"1.09ms\"}}", 0, 0, 48 * 2 * 3},
        {"{\"audio\": {\"channels\": 1, \"sampleRate\": 44100, \"format\": \"pcm_s8\","
         " \"packetTime\": \"0.14ms\"}}", 0, 0, 6},
        {"{\"audio\": {\"channels\": 1, \"sampleRate\": 44100, \"format\": \"pcm_s8\","
         " \"packetTime\": \"0.09ms\"}}", 0, 0, 4},
        {"{\"blob\": {}}", 1000, 64, 1000},
    };
    MeshClient *mc = new_client(NULL);
    char json[1024];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        jfmt(json, sizeof json,
             "{\"bufferQueueCapacity\": 2, \"maxPayloadSize\": %d, \"maxMetadataSize\": %d,"
             " \"connection\": {\"multipointGroup\": {\"urn\": \"sizes-%zu\"}}, \"payload\": %s}",
             cases[i].max_payload, cases[i].max_meta, i, cases[i].payload);
        MeshConnection *conn = new_conn(mc, (int)(i % 2), json);
        if (conn->payload_size != cases[i].size)
            fail(__FILE__, __LINE__, "%s: payload_size %zu, expected %zu", json, conn->payload_size,
                 cases[i].size);
        CHECK(conn->metadata_size == (size_t)cases[i].max_meta);
        del_conn(&conn);
    }
    del_client(&mc);
    section_ok("sizes");
}

/* ---- NULL and foreign pointers ------------------------------------------------------- */

static void test_bad_pointers(void)
{
    char json[512];
    MeshClient *mc = NULL;
    MeshConnection *conn = NULL;
    MeshBuffer *buf = NULL;
    void *fake = fake_handle;

    CHECK_RC(mesh_create_client(NULL, NULL), -MESH_ERR_BAD_CLIENT_PTR);
    CHECK_RC(mesh_create_client(NULL, "{}"), -MESH_ERR_BAD_CLIENT_PTR);
    CHECK_RC(mesh_delete_client(NULL), -MESH_ERR_BAD_CLIENT_PTR);
    CHECK_RC(mesh_delete_client(&mc), -MESH_ERR_BAD_CLIENT_PTR);
    mc = fake;
    CHECK_RC(mesh_delete_client(&mc), -MESH_ERR_BAD_CLIENT_PTR);
    CHECK(mc == fake);
    CHECK(strstr(mcm_last_error(), "mesh_delete_client: ") == mcm_last_error());

    video_json(json, sizeof json, "ptrs", 4, 0);
    CHECK_RC(mesh_create_tx_connection(NULL, &conn, json), -MESH_ERR_BAD_CLIENT_PTR);
    CHECK_RC(mesh_create_rx_connection(NULL, &conn, json), -MESH_ERR_BAD_CLIENT_PTR);
    CHECK_RC(mesh_create_tx_connection(NULL, NULL, NULL), -MESH_ERR_BAD_CLIENT_PTR);
    CHECK_RC(mesh_create_tx_connection(fake, &conn, json), -MESH_ERR_BAD_CLIENT_PTR);
    CHECK_RC(mesh_create_rx_connection(fake, &conn, json), -MESH_ERR_BAD_CLIENT_PTR);
    CHECK(conn == NULL);

    mc = new_client(NULL);
    CHECK_RC(mesh_create_tx_connection(mc, NULL, json), -MESH_ERR_BAD_CONN_PTR);
    CHECK_RC(mesh_create_rx_connection(mc, NULL, json), -MESH_ERR_BAD_CONN_PTR);
    CHECK_RC(mesh_create_tx_connection(mc, NULL, NULL), -MESH_ERR_BAD_CONN_PTR);
    CHECK_RC(mesh_create_tx_connection(mc, &conn, NULL), -MESH_ERR_BAD_CONFIG_PTR);
    CHECK_RC(mesh_create_rx_connection(mc, &conn, NULL), -MESH_ERR_BAD_CONFIG_PTR);
    CHECK(conn == NULL);

    CHECK_RC(mesh_shutdown_connection(NULL), -MESH_ERR_BAD_CONN_PTR);
    CHECK_RC(mesh_shutdown_connection(fake), -MESH_ERR_BAD_CONN_PTR);
    CHECK_RC(mesh_delete_connection(NULL), -MESH_ERR_BAD_CONN_PTR);
    CHECK_RC(mesh_delete_connection(&conn), -MESH_ERR_BAD_CONN_PTR);
    conn = fake;
    CHECK_RC(mesh_delete_connection(&conn), -MESH_ERR_BAD_CONN_PTR);
    CHECK(conn == fake);

    CHECK_RC(mesh_get_buffer(NULL, &buf), -MESH_ERR_BAD_CONN_PTR);
    CHECK_RC(mesh_get_buffer(fake, &buf), -MESH_ERR_BAD_CONN_PTR);
    CHECK_RC(mesh_get_buffer_timeout(NULL, &buf, 0), -MESH_ERR_BAD_CONN_PTR);
    CHECK_RC(mesh_get_buffer_timeout(fake, &buf, 0), -MESH_ERR_BAD_CONN_PTR);
    CHECK_RC(mesh_get_buffer_timeout(NULL, NULL, -5), -MESH_ERR_BAD_CONN_PTR);
    CHECK(buf == NULL);

    CHECK_RC(mesh_put_buffer(NULL), -MESH_ERR_BAD_BUF_PTR);
    CHECK_RC(mesh_put_buffer(&buf), -MESH_ERR_BAD_BUF_PTR);
    CHECK_RC(mesh_put_buffer_timeout(NULL, 0), -MESH_ERR_BAD_BUF_PTR);
    CHECK_RC(mesh_put_buffer_timeout(&buf, 0), -MESH_ERR_BAD_BUF_PTR);
    buf = fake;
    CHECK_RC(mesh_put_buffer(&buf), -MESH_ERR_BAD_BUF_PTR);
    CHECK_RC(mesh_put_buffer_timeout(&buf, 0), -MESH_ERR_BAD_BUF_PTR);
    CHECK(buf == fake);
    CHECK_RC(mesh_buffer_set_payload_len(NULL, 0), -MESH_ERR_BAD_BUF_PTR);
    CHECK_RC(mesh_buffer_set_metadata_len(NULL, 0), -MESH_ERR_BAD_BUF_PTR);
    CHECK_RC(mesh_buffer_set_payload_len(fake, 0), -MESH_ERR_BAD_BUF_PTR);
    CHECK_RC(mesh_buffer_set_metadata_len(fake, 0), -MESH_ERR_BAD_BUF_PTR);
    CHECK(mcm_buffer_seq(NULL) == 0 && mcm_buffer_timestamp_ns(NULL) == 0);
    CHECK(mcm_buffer_seq(fake) == 0 && mcm_buffer_timestamp_ns(fake) == 0);
    buf = NULL;

    /* Real handles passed as the wrong kind. */
    MeshConnection *rx = new_conn(mc, 0, json);
    MeshConnection *tx = new_conn(mc, 1, json);
    CHECK_RC(mesh_get_buffer_timeout(rx, NULL, 0), -MESH_ERR_BAD_BUF_PTR);
    CHECK_RC(mesh_get_buffer(rx, NULL), -MESH_ERR_BAD_BUF_PTR);
    CHECK_RC(mesh_get_buffer_timeout(tx, &buf, -3), -EINVAL);
    CHECK_RC(mesh_get_buffer_timeout(tx, &buf, INT_MIN), -EINVAL);
    CHECK(strstr(mcm_last_error(), "timeout_ms") != NULL);
    CHECK(buf == NULL);
    CHECK_RC(mesh_create_rx_connection((MeshClient *)rx, &conn, json), -MESH_ERR_BAD_CLIENT_PTR);
    CHECK_RC(mesh_shutdown_connection((MeshConnection *)mc), -MESH_ERR_BAD_CONN_PTR);
    OK(mesh_get_buffer_timeout(tx, &buf, 5000));
    CHECK_RC(mesh_get_buffer_timeout((MeshConnection *)buf, &buf, 0), -MESH_ERR_BAD_CONN_PTR);
    MeshBuffer *as_buf = (MeshBuffer *)tx;
    CHECK_RC(mesh_put_buffer(&as_buf), -MESH_ERR_BAD_BUF_PTR);
    as_buf = (MeshBuffer *)mc;
    CHECK_RC(mesh_put_buffer(&as_buf), -MESH_ERR_BAD_BUF_PTR);
    CHECK_RC(mesh_buffer_set_payload_len((MeshBuffer *)rx, 0), -MESH_ERR_BAD_BUF_PTR);
    MeshClient *as_client = (MeshClient *)buf;
    CHECK_RC(mesh_delete_client(&as_client), -MESH_ERR_BAD_CLIENT_PTR);

    /* A bad put timeout leaves the buffer with the application. */
    MeshBuffer *kept = buf;
    CHECK_RC(mesh_put_buffer_timeout(&buf, -3), -EINVAL);
    CHECK(buf == kept);
    OK(mesh_put_buffer_timeout(&buf, 1000));
    CHECK(buf == NULL);
    /* Put again through a stale copy: no longer lent. */
    CHECK_RC(mesh_put_buffer(&kept), -MESH_ERR_BAD_BUF_PTR);
    CHECK(strstr(mcm_last_error(), "not lent") != NULL);
    CHECK_RC(mesh_buffer_set_payload_len(kept, 0), -MESH_ERR_BAD_BUF_PTR);
    CHECK(mcm_buffer_seq(kept) == 0);

    del_conn(&tx);
    del_conn(&rx);
    del_client(&mc);
    section_ok("bad_pointers");
}

/* ---- mcm_last_error is per thread ---------------------------------------------------- */

static void *last_error_thread(void *arg)
{
    (void)arg;
    CHECK(mcm_last_error() != NULL && mcm_last_error()[0] == '\0');
    CHECK_RC(mesh_shutdown_connection(NULL), -MESH_ERR_BAD_CONN_PTR);
    CHECK(strstr(mcm_last_error(), "mesh_shutdown_connection") == mcm_last_error());
    return NULL;
}

static void test_last_error(void)
{
    CHECK_RC(mesh_put_buffer(NULL), -MESH_ERR_BAD_BUF_PTR);
    CHECK(strstr(mcm_last_error(), "mesh_put_buffer: ") == mcm_last_error());
    pthread_t t;
    CHECK(pthread_create(&t, NULL, last_error_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    /* Unchanged by the other thread, and by a successful call. */
    CHECK(strstr(mcm_last_error(), "mesh_put_buffer: ") == mcm_last_error());
    CHECK(mesh_err2str(0) != NULL);
    CHECK(strstr(mcm_last_error(), "mesh_put_buffer: ") == mcm_last_error());
    section_ok("last_error");
}

/* ---- timeouts ----------------------------------------------------------------------- */

static void expect_timeout(MeshConnection *conn, int timeout_ms, double at_least_ms, int use_plain_get)
{
    MeshBuffer *buf = (MeshBuffer *)fake_handle;
    double t0 = mono_ms();
    int rc = use_plain_get ? mesh_get_buffer(conn, &buf) : mesh_get_buffer_timeout(conn, &buf, timeout_ms);
    double elapsed = mono_ms() - t0;
    if (rc != -MESH_ERR_TIMEOUT)
        fail(__FILE__, __LINE__, "get (timeout %d) = %d (%s), expected -MESH_ERR_TIMEOUT",
             timeout_ms, rc, mesh_err2str(rc));
    if (elapsed < at_least_ms)
        fail(__FILE__, __LINE__, "get (timeout %d) returned after %.3f ms, before %.0f ms",
             timeout_ms, elapsed, at_least_ms);
    CHECK(buf == (MeshBuffer *)fake_handle);
}

static void test_timeouts(void)
{
    /* apiDefaultTimeoutMicroseconds is microseconds: 150 ms. */
    MeshClient *mc = new_client("{\"apiDefaultTimeoutMicroseconds\": 150000}");
    char json[512];
    MeshConnection *rx = new_conn(mc, 0, video_json(json, sizeof json, "timeouts", 4, 0));
    expect_timeout(rx, MESH_TIMEOUT_ZERO, 0, 0);
    expect_timeout(rx, 1, 1, 0);
    expect_timeout(rx, 50, 50, 0);
    expect_timeout(rx, MESH_TIMEOUT_DEFAULT, 150, 0);
    expect_timeout(rx, MESH_TIMEOUT_DEFAULT, 150, 1); /* mesh_get_buffer */

    /* A sender runs out of free buffers when it holds them all: it may hold several. */
    MeshConnection *tx = new_conn(mc, 1, json);
    MeshBuffer *held[256];
    size_t n = 0;
    for (;;) {
        CHECK(n < sizeof held / sizeof held[0]);
        int rc = mesh_get_buffer_timeout(tx, &held[n], n == 0 ? 5000 : 200);
        if (rc == -MESH_ERR_TIMEOUT)
            break;
        OK(rc);
        for (size_t k = 0; k < n; k++)
            CHECK(held[k] != held[n] && held[k]->payload_ptr != held[n]->payload_ptr);
        n++;
    }
    CHECK(n >= 4); /* at least bufferQueueCapacity */
    expect_timeout(tx, MESH_TIMEOUT_ZERO, 0, 0);
    expect_timeout(tx, 30, 30, 0);
    /* Put them all (the receiver keeps what fits its queue), then one is free again. */
    for (size_t k = 0; k < n; k++) {
        OK(mesh_put_buffer(&held[k]));
        CHECK(held[k] == NULL);
    }
    MeshBuffer *buf = NULL;
    OK(mesh_get_buffer_timeout(tx, &buf, 5000));
    OK(mesh_put_buffer(&buf));
    del_conn(&tx);
    del_conn(&rx);
    del_client(&mc);
    section_ok("timeouts");
}

/* ---- shutdown ----------------------------------------------------------------------- */

struct blocked_get {
    MeshConnection *conn;
    int rc;
    MeshBuffer *buf;
};

static void *blocked_get_thread(void *arg)
{
    struct blocked_get *g = arg;
    g->rc = mesh_get_buffer_timeout(g->conn, &g->buf, MESH_TIMEOUT_INFINITE);
    return NULL;
}

static void test_shutdown(void)
{
    MeshClient *mc = new_client(NULL);
    char json[512];
    MeshConnection *rx = new_conn(mc, 0, video_json(json, sizeof json, "shutdown", 4, 0));

    struct blocked_get g = {rx, 1, NULL};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, blocked_get_thread, &g) == 0);
    sleep_ms(200); /* let it block */
    OK(mesh_shutdown_connection(rx));
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_RC(g.rc, -MESH_ERR_CONN_CLOSED);
    CHECK(g.buf == NULL);
    MeshBuffer *buf = NULL;
    CHECK_RC(mesh_get_buffer_timeout(rx, &buf, MESH_TIMEOUT_ZERO), -MESH_ERR_CONN_CLOSED);
    CHECK_RC(mesh_get_buffer(rx, &buf), -MESH_ERR_CONN_CLOSED);
    OK(mesh_shutdown_connection(rx)); /* again */

    /* A sender's buffer cannot be sent after a shutdown; it stays with the application. */
    MeshConnection *tx = new_conn(mc, 1, json);
    OK(mesh_get_buffer_timeout(tx, &buf, 5000));
    OK(mesh_shutdown_connection(tx));
    MeshBuffer *kept = buf;
    CHECK_RC(mesh_put_buffer(&buf), -MESH_ERR_CONN_CLOSED);
    CHECK(buf == kept);
    OK(mesh_buffer_set_payload_len(buf, 1));
    MeshBuffer *other = NULL;
    CHECK_RC(mesh_get_buffer_timeout(tx, &other, 0), -MESH_ERR_CONN_CLOSED);
    /* Shut down, not deleted: the client still has both. */
    CHECK_RC(mesh_delete_client(&mc), -MESH_ERR_FOUND_ALLOCATED);
    del_conn(&tx); /* with the buffer still out */
    del_conn(&rx);
    del_client(&mc);
    section_ok("shutdown");
}

/* ---- limits ------------------------------------------------------------------------- */

static void test_limits(void)
{
    MeshClient *mc = new_client("{\"maxMediaConnections\": 2}");
    char json[512];
    video_json(json, sizeof json, "limits", 4, 0);
    MeshConnection *a = new_conn(mc, 0, json);
    MeshConnection *b = new_conn(mc, 0, json);
    MeshConnection *c = (MeshConnection *)fake_handle;
    CHECK_RC(mesh_create_tx_connection(mc, &c, json), -MESH_ERR_MAX_CONN);
    CHECK_RC(mesh_create_rx_connection(mc, &c, json), -MESH_ERR_MAX_CONN);
    CHECK(c == (MeshConnection *)fake_handle);
    MeshClient *kept = mc;
    CHECK_RC(mesh_delete_client(&mc), -MESH_ERR_FOUND_ALLOCATED);
    CHECK(mc == kept);
    CHECK(strstr(mcm_last_error(), "2 connection") != NULL);
    del_conn(&a);
    CHECK_RC(mesh_delete_client(&mc), -MESH_ERR_FOUND_ALLOCATED);
    c = new_conn(mc, 1, json);
    del_conn(&b);
    del_conn(&c);
    del_client(&mc);
    CHECK_RC(mesh_delete_client(&mc), -MESH_ERR_BAD_CLIENT_PTR);
    section_ok("limits");
}

/* ---- frames ------------------------------------------------------------------------- */

static uint8_t pattern(unsigned frame, size_t i)
{
    return (uint8_t)(frame * 31u + i * 7u + (i >> 8));
}

static void test_round_trip(void)
{
    MeshClient *mc_tx = new_client(NULL);
    MeshClient *mc_rx = new_client(NULL);
    char json[512];
    video_json(json, sizeof json, "round-trip", 16, 64);
    MeshConnection *rx = new_conn(mc_rx, 0, json);
    MeshConnection *tx = new_conn(mc_tx, 1, json);
    CHECK(tx->payload_size == SMALL_FRAME && rx->payload_size == SMALL_FRAME);
    CHECK(tx->metadata_size == 64 && rx->metadata_size == 64);

    /* An empty receiver. */
    MeshBuffer *in = (MeshBuffer *)fake_handle;
    CHECK_RC(mesh_get_buffer_timeout(rx, &in, MESH_TIMEOUT_ZERO), -MESH_ERR_TIMEOUT);
    in = NULL;

    const size_t lens[] = {SMALL_FRAME, SMALL_FRAME / 2, 1, 0, 4097};
    for (unsigned i = 0; i < 25; i++) {
        MeshBuffer *out = NULL;
        OK(mesh_get_buffer_timeout(tx, &out, 5000));
        CHECK(out->conn == tx);
        CHECK(out->payload_ptr != NULL && out->metadata_ptr != NULL);
        CHECK(out->payload_len == SMALL_FRAME && out->metadata_len == 64);
        CHECK(mcm_buffer_seq(out) == 0 && mcm_buffer_timestamp_ns(out) == 0);
        CHECK(((uintptr_t)out->payload_ptr & 7) == 0 && ((uintptr_t)out->metadata_ptr & 7) == 0);
        /* Lengths beyond the sizes are refused and change nothing. */
        CHECK_RC(mesh_buffer_set_payload_len(out, SMALL_FRAME + 1), -MESH_ERR_BAD_BUF_LEN);
        CHECK_RC(mesh_buffer_set_payload_len(out, SIZE_MAX), -MESH_ERR_BAD_BUF_LEN);
        CHECK_RC(mesh_buffer_set_metadata_len(out, 65), -MESH_ERR_BAD_BUF_LEN);
        CHECK(out->payload_len == SMALL_FRAME && out->metadata_len == 64);
        uint8_t *p = out->payload_ptr;
        for (size_t k = 0; k < SMALL_FRAME; k++)
            p[k] = pattern(i, k);
        char meta[64];
        int mlen = snprintf(meta, sizeof meta, "frame-%u", i) + 1;
        memcpy(out->metadata_ptr, meta, (size_t)mlen);
        size_t len = lens[i % (sizeof lens / sizeof lens[0])];
        OK(mesh_buffer_set_payload_len(out, len));
        OK(mesh_buffer_set_metadata_len(out, (size_t)mlen));
        CHECK(out->payload_len == len && out->metadata_len == (size_t)mlen);
        uint64_t before = realtime_ns();
        if (i % 2)
            OK(mesh_put_buffer(&out));
        else
            OK(mesh_put_buffer_timeout(&out, 1000));
        CHECK(out == NULL);

        OK(mesh_get_buffer_timeout(rx, &in, 5000));
        CHECK(in->conn == rx);
        if (in->payload_len != len)
            fail(__FILE__, __LINE__, "frame %u: payload_len %zu, expected %zu", i, in->payload_len, len);
        CHECK(in->metadata_len == (size_t)mlen);
        CHECK(memcmp(in->metadata_ptr, meta, (size_t)mlen) == 0);
        const uint8_t *q = in->payload_ptr;
        for (size_t k = 0; k < len; k++)
            if (q[k] != pattern(i, k))
                fail(__FILE__, __LINE__, "frame %u byte %zu: %u, expected %u", i, k, q[k], pattern(i, k));
        CHECK(mcm_buffer_seq(in) == i);
        uint64_t ts = mcm_buffer_timestamp_ns(in);
        CHECK(ts >= before && ts <= realtime_ns());
        /* A receiver's lengths are the frame's. */
        CHECK_RC(mesh_buffer_set_payload_len(in, 0), -MESH_ERR_BAD_BUF_PTR);
        CHECK_RC(mesh_buffer_set_metadata_len(in, 0), -MESH_ERR_BAD_BUF_PTR);
        CHECK(strstr(mcm_last_error(), "receiver") != NULL);
        CHECK(in->payload_len == len);
        MeshBuffer *stale = in;
        if (i % 2)
            OK(mesh_put_buffer(&in));
        else
            OK(mesh_put_buffer_timeout(&in, MESH_TIMEOUT_INFINITE));
        CHECK(in == NULL);
        CHECK_RC(mesh_put_buffer(&stale), -MESH_ERR_BAD_BUF_PTR);
    }

    /* Several sender buffers at once, published in the order they are put. */
    MeshBuffer *outs[3];
    for (unsigned k = 0; k < 3; k++) {
        OK(mesh_get_buffer_timeout(tx, &outs[k], 5000));
        memcpy(outs[k]->payload_ptr, &k, sizeof k);
        OK(mesh_buffer_set_payload_len(outs[k], sizeof k));
        OK(mesh_buffer_set_metadata_len(outs[k], 0));
    }
    CHECK(outs[0]->payload_ptr != outs[1]->payload_ptr && outs[1]->payload_ptr != outs[2]->payload_ptr);
    const unsigned order[] = {2, 0, 1};
    for (unsigned k = 0; k < 3; k++)
        OK(mesh_put_buffer(&outs[order[k]]));
    for (unsigned k = 0; k < 3; k++) {
        OK(mesh_get_buffer_timeout(rx, &in, 5000));
        unsigned tag;
        CHECK(in->payload_len == sizeof tag && in->metadata_len == 0);
        memcpy(&tag, in->payload_ptr, sizeof tag);
        CHECK(tag == order[k]);
        CHECK(mcm_buffer_seq(in) == 25 + k);
        OK(mesh_put_buffer(&in));
    }

    /* A receiver may hold several frames too, and release them in any order. */
    MeshBuffer *ins[3];
    for (unsigned k = 0; k < 3; k++) {
        MeshBuffer *out = NULL;
        OK(mesh_get_buffer_timeout(tx, &out, 5000));
        OK(mesh_put_buffer(&out));
    }
    for (unsigned k = 0; k < 3; k++) {
        OK(mesh_get_buffer_timeout(rx, &ins[k], 5000));
        CHECK(mcm_buffer_seq(ins[k]) == 28 + k);
    }
    OK(mesh_put_buffer(&ins[1]));
    OK(mesh_put_buffer(&ins[2]));
    OK(mesh_put_buffer(&ins[0]));

    /* Deleting connections with buffers still out frees them (ASan checks). */
    MeshBuffer *out = NULL;
    OK(mesh_get_buffer_timeout(tx, &out, 5000));
    OK(mesh_put_buffer(&out));
    OK(mesh_get_buffer_timeout(tx, &out, 5000));
    OK(mesh_get_buffer_timeout(rx, &in, 5000));
    del_conn(&tx);
    del_conn(&rx);
    del_client(&mc_tx);
    del_client(&mc_rx);
    section_ok("round_trip");
}

static void test_audio_round_trip(void)
{
    MeshClient *mc = new_client(NULL);
    const char *json = "{\"connection\": {\"multipointGroup\": {\"urn\": \"audio\"}},"
                       " \"payload\": {\"audio\": {\"channels\": 2, \"sampleRate\": 48000,"
                       " \"format\": \"pcm_s24be\", \"packetTime\": \"1ms\"}}}";
    MeshConnection *rx = new_conn(mc, 0, json);
    MeshConnection *tx = new_conn(mc, 1, json);
    CHECK(tx->payload_size == 288 && rx->payload_size == 288 && tx->metadata_size == 0);
    for (unsigned i = 0; i < 10; i++) {
        MeshBuffer *b = NULL;
        OK(mesh_get_buffer(tx, &b));
        CHECK(b->payload_len == 288 && b->metadata_len == 0);
        memset(b->payload_ptr, (int)i, 288);
        OK(mesh_put_buffer(&b));
        OK(mesh_get_buffer(rx, &b));
        CHECK(b->payload_len == 288);
        CHECK(((uint8_t *)b->payload_ptr)[0] == i && ((uint8_t *)b->payload_ptr)[287] == i);
        CHECK(mcm_buffer_seq(b) == i);
        OK(mesh_put_buffer(&b));
    }
    del_conn(&tx);
    del_conn(&rx);
    del_client(&mc);
    section_ok("audio_round_trip");
}

int main(void)
{
    memset(fake_handle, 0x55, sizeof fake_handle);
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_constants();
    test_err2str();
    test_last_error();
    test_client_config();
    test_conn_config();
    test_sizes();
    test_bad_pointers();
    test_timeouts();
    test_shutdown();
    test_limits();
    test_round_trip();
    test_audio_round_trip();
    printf("api_test: all passed\n");
    return 0;
}
