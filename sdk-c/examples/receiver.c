/*
 * receiver.c: receives video frames or audio packets of a multipoint group through the local
 * media proxy, with the MCM SDK API (mesh_dp.h), and verifies what sender.c sent.
 *
 * Usage:
 *   receiver --group URN [--video WxH] [--pixel-format F] [--audio]
 *            [--frames N] [--timeout-ms T] [--delay-ms D] [--capacity N]
 *
 *   --group URN        the multipoint group to receive from (required)
 *   --video WxH        video frames of W x H pixels (the default, 1920x1080)
 *   --pixel-format F   yuv422p10le | v210 | yuv422p10rfc4175 (default yuv422p10rfc4175)
 *   --audio            audio packets instead: 48 kHz, 2 channels, pcm_s24be, 1 ms (288 bytes)
 *   --frames N         stop after N frames (default 0: no limit)
 *   --timeout-ms T     stop when no frame arrives for T ms (default: wait forever)
 *   --delay-ms D       sleep D ms before releasing each frame: a deliberately slow receiver
 *                      (frames that do not fit its queue meanwhile are dropped: gaps)
 *   --capacity N       bufferQueueCapacity, a power of two in 2..128 (default 16)
 *   --help             this text
 *
 * The format flags must describe the same buffers as the sender's (the group refuses other
 * sizes). The media proxy is found through MCM_MEDIA_PROXY_IP / MCM_MEDIA_PROXY_PORT (default
 * 127.0.0.1:8002), or the engine's Unix socket named by MCM_SDK_UNIX_SOCKET.
 *
 * Each frame's checksum is verified (see sender.c: bytes 8..15 hold the FNV-1a-64 hash of bytes
 * 16..payload_len as native-endian 64-bit words), and the sequence numbers (mcm_buffer_seq())
 * must increase; a jump counts the missing frames as gaps.
 *
 * Output: "ready group=URN payload_size=N" once connected, then at the end one line
 *   summary received=N first_seq=A last_seq=B gaps=G bad_checksums=C bad_seq=S
 * (first_seq and last_seq are 0 when nothing arrived). Errors go to stderr with mesh_err2str()
 * and mcm_last_error(). SIGINT and SIGTERM stop it cleanly (a signal thread calls
 * mesh_shutdown_connection(), which wakes the blocked get). Exit status 0 when every frame's
 * checksum was right and the sequence numbers increased, 1 otherwise or on an error, 2 on a
 * usage error.
 */
#define _POSIX_C_SOURCE 200809L

#include "example.h"

#include <time.h>

/* Bad frames reported one by one; the rest are only counted. */
#define REPORT_BAD 5

static const char usage_text[] =
    "usage: receiver --group URN [--video WxH] [--pixel-format F] [--audio]\n"
    "                [--frames N] [--timeout-ms T] [--delay-ms D] [--capacity N]\n"
    "  --group URN        the multipoint group to receive from (required)\n"
    "  --video WxH        video frames of W x H pixels (default 1920x1080)\n"
    "  --pixel-format F   yuv422p10le | v210 | yuv422p10rfc4175 (default yuv422p10rfc4175)\n"
    "  --audio            audio packets: 48 kHz, 2 channels, pcm_s24be, 1 ms\n"
    "  --frames N         stop after N frames (default 0: no limit)\n"
    "  --timeout-ms T     stop when no frame arrives for T ms (default: wait forever)\n"
    "  --delay-ms D       sleep D ms before releasing each frame (a slow receiver)\n"
    "  --capacity N       bufferQueueCapacity, a power of two in 2..128 (default 16)\n";

static void sleep_ms(unsigned long long ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int main(int argc, char **argv)
{
    struct options o = default_options();
    unsigned long long delay_ms = 0, timeout_ms = 0;
    int has_timeout = 0;

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
            fprintf(stderr, "receiver: %s needs a value\n%s", a, usage_text);
            return 2;
        }
        int ok = parse_shared_option(&o, a, v);
        if (ok < 0 && strcmp(a, "--timeout-ms") == 0) {
            ok = parse_u64(v, &timeout_ms) && timeout_ms <= 2147483647ull;
            has_timeout = 1;
        } else if (ok < 0 && strcmp(a, "--delay-ms") == 0) {
            ok = parse_u64(v, &delay_ms);
        } else if (ok < 0) {
            fprintf(stderr, "receiver: unknown option %s\n%s", a, usage_text);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "receiver: bad value for %s: %s\n", a, v);
            return 2;
        }
        i++;
    }
    if (!check_group("receiver", &o, usage_text))
        return 2;

    char cfg[1024];
    connection_json(cfg, sizeof cfg, &o, 0);
    struct signals sigs;
    block_signals(&sigs);
    MeshClient *client = NULL;
    MeshConnection *conn = NULL;
    if (open_connection("receiver", cfg, 0, &sigs, &client, &conn))
        return 1;
    printf("ready group=%s payload_size=%zu\n", o.group, conn->payload_size);
    fflush(stdout);

    int status = 0, rc;
    unsigned long long received = 0, gaps = 0, bad_checksums = 0, bad_seq = 0;
    uint64_t first_seq = 0, last_seq = 0;
    int wait_ms = has_timeout ? (int)timeout_ms : MESH_TIMEOUT_INFINITE;
    while ((o.frames == 0 || received < o.frames) && !atomic_load(&stopping)) {
        MeshBuffer *buf = NULL;
        rc = mesh_get_buffer_timeout(conn, &buf, wait_ms);
        if (rc == -MESH_ERR_CONN_CLOSED && atomic_load(&stopping))
            break;
        if (rc == -MESH_ERR_TIMEOUT && has_timeout) {
            fprintf(stderr, "receiver: no frame for %llu ms, stopping\n", timeout_ms);
            break;
        }
        if (rc) {
            report("receiver", "mesh_get_buffer_timeout", rc);
            status = 1;
            break;
        }
        uint64_t seq = mcm_buffer_seq(buf);
        const uint8_t *p = buf->payload_ptr;
        uint64_t index = 0, stored = 0, computed = 0;
        int bad = buf->payload_len < HEADER_BYTES;
        if (!bad) {
            memcpy(&index, p, 8);
            memcpy(&stored, p + 8, 8);
            computed = fnv1a64_words(p + HEADER_BYTES, buf->payload_len - HEADER_BYTES);
            bad = stored != computed;
        }
        if (bad && bad_checksums++ < REPORT_BAD)
            fprintf(stderr,
                    "receiver: seq %llu: bad checksum (%zu bytes, frame index %llu, stored %016llx,"
                    " computed %016llx)\n",
                    (unsigned long long)seq, buf->payload_len, (unsigned long long)index,
                    (unsigned long long)stored, (unsigned long long)computed);
        if (received == 0) {
            first_seq = seq;
        } else if (seq <= last_seq) {
            if (bad_seq++ < REPORT_BAD)
                fprintf(stderr, "receiver: seq %llu after %llu: not increasing\n",
                        (unsigned long long)seq, (unsigned long long)last_seq);
        } else {
            gaps += seq - last_seq - 1;
        }
        last_seq = seq;
        received++;
        if (delay_ms)
            sleep_ms(delay_ms);
        rc = mesh_put_buffer(&buf);
        if (rc) {
            report("receiver", "mesh_put_buffer", rc);
            status = 1;
            break;
        }
    }
    printf("summary received=%llu first_seq=%llu last_seq=%llu gaps=%llu bad_checksums=%llu"
           " bad_seq=%llu\n",
           received, (unsigned long long)first_seq, (unsigned long long)last_seq, gaps,
           bad_checksums, bad_seq);
    fflush(stdout);
    if (bad_checksums || bad_seq)
        status = 1;

    return close_connection("receiver", &sigs, &client, &conn, status);
}
