//! Generates the bindings with bindgen and compiles the wrappers of libfabric's static-inline
//! functions (`fi_endpoint`, `fi_writedata`, `fi_cq_read`, ... are all inline in the headers).

use std::env;
use std::path::PathBuf;

fn main() {
    let lib = pkg_config::Config::new()
        .atleast_version("1.17")
        .probe("libfabric")
        .expect("libfabric >= 1.17 not found by pkg-config: install libfabric-dev (scripts/setup_build_env.sh does)");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let shim = out.join("fabric_inline");
    let mut builder = bindgen::Builder::default()
        .header("wrapper.h")
        .allowlist_function("fi_.*")
        .allowlist_type("fi_.*|fid.*")
        .allowlist_var("FI_.*")
        // Deprecated and not wrappable (they take no endpoint argument the shim can forward).
        .blocklist_function("fi_rx_size_left|fi_tx_size_left")
        .wrap_static_fns(true)
        .wrap_static_fns_path(&shim)
        .derive_default(true)
        .layout_tests(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for p in &lib.include_paths {
        builder = builder.clang_arg(format!("-I{}", p.display()));
    }
    let bindings = builder
        .generate()
        .expect("bindgen over libfabric's headers");
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
    let mut cc = cc::Build::new();
    cc.file(shim.with_extension("c"))
        .include(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .opt_level(3)
        .warnings(false);
    for p in &lib.include_paths {
        cc.include(p);
    }
    cc.compile("fabric_inline");
    println!("cargo:rerun-if-changed=wrapper.h");
}
