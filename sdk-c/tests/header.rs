//! The checked-in C header `include/mesh_dp.h` is exactly what cbindgen generates from
//! `src/capi.rs` with `cbindgen.toml`; this is how CI fails when the C API changed and the
//! header was not regenerated.
//!
//! Regenerate with `MCM_BLESS=1 cargo test -p mcm-sdk --test header`.

use std::path::Path;

const BLESS: &str = "MCM_BLESS";

fn generate(dir: &Path) -> String {
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml"))
        .unwrap_or_else(|e| panic!("cannot read cbindgen.toml: {e}"));
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/capi.rs"))
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen failed on src/capi.rs: {e}"));
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("cbindgen writes UTF-8")
}

#[test]
fn checked_in_header_matches_cbindgen_output() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = dir.join("include/mesh_dp.h");
    let generated = generate(dir);
    if std::env::var(BLESS).is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current == generated {
        return;
    }
    let first_diff = current
        .lines()
        .zip(generated.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| current.lines().count().min(generated.lines().count()));
    let line = |text: &str| {
        text.lines()
            .nth(first_diff)
            .unwrap_or("<end of file>")
            .to_owned()
    };
    panic!(
        "{} is stale: regenerating it from src/capi.rs changes it.\n\
         first difference at line {}:\n  checked in: {}\n  generated:  {}\n\
         Regenerate it with `{BLESS}=1 cargo test -p mcm-sdk --test header` and commit the result.",
        path.display(),
        first_diff + 1,
        line(&current),
        line(&generated),
    );
}

#[test]
fn header_declares_the_whole_mcm_api() {
    let generated = generate(Path::new(env!("CARGO_MANIFEST_DIR")));
    let wanted = [
        "#define MESH_VERSION \"25.03\"",
        "typedef struct MeshClient MeshClient;",
        "MeshClient *const client;",
        "const size_t payload_size;",
        "void *const payload_ptr;",
        "#define MESH_TIMEOUT_DEFAULT -2",
        "#define MESH_TIMEOUT_INFINITE -1",
        "#define MESH_TIMEOUT_ZERO 0",
        "#define MESH_ERR_BAD_CLIENT_PTR 1000",
        "#define MESH_ERR_NOT_IMPLEMENTED 1013",
        "int mesh_create_client(MeshClient **mc, const char *cfg);",
        "int mesh_delete_client(MeshClient **mc);",
        "int mesh_create_tx_connection(MeshClient *mc, MeshConnection **conn, const char *cfg);",
        "int mesh_create_rx_connection(MeshClient *mc, MeshConnection **conn, const char *cfg);",
        "int mesh_shutdown_connection(MeshConnection *conn);",
        "int mesh_delete_connection(MeshConnection **conn);",
        "int mesh_get_buffer(MeshConnection *conn, MeshBuffer **buf);",
        "int mesh_get_buffer_timeout(MeshConnection *conn, MeshBuffer **buf, int timeout_ms);",
        "int mesh_put_buffer(MeshBuffer **buf);",
        "int mesh_put_buffer_timeout(MeshBuffer **buf, int timeout_ms);",
        "int mesh_buffer_set_payload_len(MeshBuffer *buf, size_t len);",
        "int mesh_buffer_set_metadata_len(MeshBuffer *buf, size_t len);",
        "const char *mesh_err2str(int err);",
        "uint64_t mcm_buffer_seq(const MeshBuffer *buf);",
        "uint64_t mcm_buffer_timestamp_ns(const MeshBuffer *buf);",
        "const char *mcm_last_error(void);",
        "#ifndef MESH_DP_H",
        "extern \"C\" {",
    ];
    let missing: Vec<_> = wanted.iter().filter(|w| !generated.contains(*w)).collect();
    assert!(
        missing.is_empty(),
        "the header lacks {missing:#?}:\n{generated}"
    );
}
