/*
 * mcm_app.c: code written the way an MCM 25.03 application uses mesh_dp.h. It is compiled and
 * linked (not run) by engine/tests/c_api.rs as C99, C11 and C++11/C++17, with -pedantic
 * -Wall -Wextra -Werror, to check that the header is source compatible in all of them.
 */
#include <mesh_dp.h>

#include <stdio.h>
#include <string.h>

static int send_frames(MeshClient *mc, const char *cfg, int frames)
{
    MeshConnection *conn = NULL;
    int err = mesh_create_tx_connection(mc, &conn, cfg);
    if (err) {
        printf("Failed to create connection: %s (%d)\n", mesh_err2str(err), err);
        return err;
    }
    for (int i = 0; i < frames; i++) {
        MeshBuffer *buf = NULL;
        err = mesh_get_buffer(conn, &buf);
        if (err)
            break;
        memset(buf->payload_ptr, i, buf->payload_len);
        err = mesh_buffer_set_payload_len(buf, conn->payload_size / 2);
        if (!err && conn->metadata_size)
            err = mesh_buffer_set_metadata_len(buf, 0);
        if (err)
            break;
        err = mesh_put_buffer_timeout(&buf, MESH_TIMEOUT_DEFAULT);
        if (err)
            break;
    }
    mesh_shutdown_connection(conn);
    mesh_delete_connection(&conn);
    return err;
}

static int receive_frames(MeshClient *mc, const char *cfg, int frames)
{
    MeshConnection *conn = NULL;
    int err = mesh_create_rx_connection(mc, &conn, cfg);
    if (err)
        return err;
    for (int i = 0; i < frames; i++) {
        MeshBuffer *buf = NULL;
        err = mesh_get_buffer_timeout(conn, &buf, i ? MESH_TIMEOUT_ZERO : MESH_TIMEOUT_INFINITE);
        if (err == -MESH_ERR_CONN_CLOSED || err == -MESH_ERR_TIMEOUT)
            break;
        const unsigned char *data = (const unsigned char *)buf->payload_ptr;
        MeshConnection *owner = buf->conn;
        MeshClient *client = owner->client;
        printf("frame of %zu bytes, first %u, metadata %zu bytes at %p, client %p, seq %llu\n",
               buf->payload_len, buf->payload_len ? data[0] : 0u, buf->metadata_len,
               buf->metadata_ptr, (void *)client, (unsigned long long)mcm_buffer_seq(buf));
        (void)mcm_buffer_timestamp_ns(buf);
        err = mesh_put_buffer(&buf);
        if (err)
            break;
    }
    mesh_delete_connection(&conn);
    return err;
}

int main(void)
{
    const char *client_cfg = "{\"apiVersion\": \"v1\","
                             " \"apiConnectionString\": \"Server=127.0.0.1; Port=8002\","
                             " \"apiDefaultTimeoutMicroseconds\": 100000,"
                             " \"maxMediaConnections\": 32}";
    const char *conn_cfg = "{\"connection\": {\"multipointGroup\": {\"urn\": \"ipv4:224.0.0.1:9003\"}},"
                           " \"payload\": {\"video\": {\"width\": 1920, \"height\": 1080,"
                           " \"fps\": 60.0, \"pixelFormat\": \"yuv422p10le\"}}}";
    bool verbose = true; /* bool comes with mesh_dp.h, as in MCM */
    uint64_t n = 0;      /* so do the fixed-width types */
    MeshClient *mc = NULL;
    int err = mesh_create_client(&mc, client_cfg);
    if (err) {
        printf("mesh %s: %s: %s\n", MESH_VERSION, mesh_err2str(err), mcm_last_error());
        return 1;
    }
    err = send_frames(mc, conn_cfg, 3);
    if (!err)
        err = receive_frames(mc, conn_cfg, 3);
    if (verbose)
        printf("%s (%llu)\n", mesh_err2str(err), (unsigned long long)n);
    err = mesh_delete_client(&mc);
    return err == 0 && MESH_VERSION_MAJOR == 25 ? 0 : 1;
}
