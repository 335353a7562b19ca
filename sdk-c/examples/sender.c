/*
 * sender.c: sends video frames or audio packets to a multipoint group through the local media
 * proxy, with the MCM SDK API (mesh_dp.h). Pair it with receiver.c, which checks every frame.
 *
 * Usage:
 *   sender --group URN [--video WxH] [--pixel-format F] [--audio]
 *          [--frames N] [--fps F] [--capacity N]
 *
 *   --group URN        the multipoint group to send to (required)
 *   --video WxH        video frames of W x H pixels (the default, 1920x1080)
 *   --pixel-format F   yuv422p10le | v210 | yuv422p10rfc4175 (default yuv422p10rfc4175)
 *   --audio            audio packets instead: 48 kHz, 2 channels, pcm_s24be, 1 ms (288 bytes)
 *   --frames N         stop after N buffers (default 0: until SIGINT or SIGTERM)
 *   --fps F            buffers per second, 0 = as fast as possible (default 60 for video,
 *                      1000 for audio: one packet per packet time)
 *   --capacity N       bufferQueueCapacity, a power of two in 2..128 (default 16)
 *   --help             this text
 *
 * The media proxy is found through MCM_MEDIA_PROXY_IP / MCM_MEDIA_PROXY_PORT (default
 * 127.0.0.1:8002), or the engine's Unix socket named by MCM_SDK_UNIX_SOCKET.
 *
 * Frame format (what receiver.c verifies): bytes 0..7 hold the frame index, bytes 8..15 the
 * FNV-1a-64 hash of bytes 16..payload_len (taken as native-endian 64-bit words, a tail shorter
 * than 8 bytes byte by byte); the rest is a pattern derived from the frame index.
 *
 * Output: "ready group=URN payload_size=N" once connected, then at the end one line
 * "summary sent=N". Errors go to stderr with mesh_err2str() and mcm_last_error(). SIGINT and
 * SIGTERM stop it cleanly (a signal thread calls mesh_shutdown_connection()). Exit status 0 on
 * success, 1 on an error, 2 on a usage error.
 */
#define _POSIX_C_SOURCE 200809L

#include "example.h"

#include <time.h>

static const char usage_text[] =
    "usage: sender --group URN [--video WxH] [--pixel-format F] [--audio]\n"
    "              [--frames N] [--fps F] [--capacity N]\n"
    "  --group URN        the multipoint group to send to (required)\n"
    "  --video WxH        video frames of W x H pixels (default 1920x1080)\n"
    "  --pixel-format F   yuv422p10le | v210 | yuv422p10rfc4175 (default yuv422p10rfc4175)\n"
    "  --audio            audio packets: 48 kHz, 2 channels, pcm_s24be, 1 ms\n"
    "  --frames N         stop after N buffers (default 0: until SIGINT/SIGTERM)\n"
    "  --fps F            buffers per second, 0 = as fast as possible (default 60 video, 1000 audio)\n"
    "  --capacity N       bufferQueueCapacity, a power of two in 2..128 (default 16)\n";

/* Fills a frame: index, pattern, then the hash of the pattern. */
static void fill_frame(uint8_t *p, size_t len, uint64_t index)
{
    size_t i = HEADER_BYTES;
    uint64_t seed = (index + 1) * 0x9e3779b97f4a7c15ull;
    for (; i + 8 <= len; i += 8) {
        uint64_t w = seed ^ ((uint64_t)i * 0xbf58476d1ce4e5b9ull);
        memcpy(p + i, &w, 8);
    }
    for (; i < len; i++)
        p[i] = (uint8_t)(index + i);
    uint64_t hash = fnv1a64_words(p + HEADER_BYTES, len - HEADER_BYTES);
    memcpy(p, &index, 8);
    memcpy(p + 8, &hash, 8);
}

static void add_ns(struct timespec *t, uint64_t ns)
{
    uint64_t total = (uint64_t)t->tv_nsec + ns;
    t->tv_sec += (time_t)(total / 1000000000u);
    t->tv_nsec = (long)(total % 1000000000u);
}

int main(int argc, char **argv)
{
    struct options o = default_options();
    double fps = -1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else if (strcmp(a, "--audio") == 0) {
            o.audio = 1;
            continue;
        } else if (!v) {
            fprintf(stderr, "sender: %s needs a value\n%s", a, usage_text);
            return 2;
        }
        int ok = parse_shared_option(&o, a, v);
        if (ok < 0 && strcmp(a, "--fps") == 0) {
            char *end;
            fps = strtod(v, &end);
            ok = *end == '\0' && fps >= 0;
        } else if (ok < 0) {
            fprintf(stderr, "sender: unknown option %s\n%s", a, usage_text);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "sender: bad value for %s: %s\n", a, v);
            return 2;
        }
        i++;
    }
    if (!check_group("sender", &o, usage_text))
        return 2;
    if (fps < 0)
        fps = o.audio ? 1000 : 60;

    char cfg[1024];
    connection_json(cfg, sizeof cfg, &o, fps);
    struct signals sigs;
    block_signals(&sigs);
    MeshClient *client = NULL;
    MeshConnection *conn = NULL;
    if (open_connection("sender", cfg, 1, &sigs, &client, &conn))
        return 1;
    printf("ready group=%s payload_size=%zu\n", o.group, conn->payload_size);
    fflush(stdout);

    int status = 0, rc;
    unsigned long long sent = 0;
    uint64_t period_ns = fps > 0 ? (uint64_t)(1e9 / fps) : 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while ((o.frames == 0 || sent < o.frames) && !atomic_load(&stopping)) {
        MeshBuffer *buf = NULL;
        rc = mesh_get_buffer_timeout(conn, &buf, 5000);
        if (rc == -MESH_ERR_CONN_CLOSED && atomic_load(&stopping))
            break;
        if (rc) {
            report("sender", "mesh_get_buffer_timeout", rc);
            status = 1;
            break;
        }
        fill_frame(buf->payload_ptr, buf->payload_len, sent);
        rc = mesh_put_buffer(&buf);
        if (rc == -MESH_ERR_CONN_CLOSED && atomic_load(&stopping))
            break; /* the buffer goes with the connection */
        if (rc) {
            report("sender", "mesh_put_buffer", rc);
            status = 1;
            break;
        }
        sent++;
        if (period_ns) {
            add_ns(&next, period_ns);
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {
            }
        }
    }
    printf("summary sent=%llu\n", sent);
    fflush(stdout);
    return close_connection("sender", &sigs, &client, &conn, status);
}
