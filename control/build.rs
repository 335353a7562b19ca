//! Generates the control plane's protobuf messages and grpcio stubs from
//! `proto/proto/control.proto` and
//! `health.proto`, without protoc.
//!
//! Messages: `protobuf-codegen` 3 with its pure-Rust parser. Stubs: `grpcio-compiler`, whose
//! generator takes protobuf-2 descriptors (and whose own protobuf-2 parser drops `service`
//! blocks), so the file is parsed by `protobuf-parse` 3 and each descriptor is handed over by
//! serialising it and parsing the bytes as the protobuf-2 type. The stubs only name the message
//! types and grpcio's codec functions, which the protobuf-3 codec provides: protobuf 2 stays a
//! build-time dependency.

use std::path::{Path, PathBuf};

use protobuf::Message as _;
use protobuf2::Message as _;

const PROTO_DIR: &str = "../proto/proto";
/// The files, and the module each one's messages land in.
const PROTOS: [(&str, &str); 2] = [("control.proto", "control"), ("health.proto", "health")];

fn main() {
    let paths: Vec<String> = PROTOS
        .iter()
        .map(|(file, _)| format!("{PROTO_DIR}/{file}"))
        .collect();
    for p in &paths {
        println!("cargo:rerun-if-changed={p}");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("control");
    std::fs::create_dir_all(&out).expect("create the output folder");

    protobuf_codegen::Codegen::new()
        .pure()
        .include(PROTO_DIR)
        .inputs(&paths)
        .out_dir(&out)
        .run()
        .expect("generate the control messages");

    let set = protobuf_parse::Parser::new()
        .pure()
        .include(PROTO_DIR)
        .inputs(&paths)
        .file_descriptor_set()
        .expect("parse the protocol files");
    let bytes = set.write_to_bytes().expect("serialise the descriptors");
    let v2 = protobuf2::descriptor::FileDescriptorSet::parse_from_bytes(&bytes)
        .expect("descriptors as protobuf 2");
    let wanted: Vec<String> = PROTOS.iter().map(|(f, _)| (*f).to_owned()).collect();
    let files = grpcio_compiler::codegen::r#gen(v2.get_file(), &wanted);
    assert!(
        !files.is_empty(),
        "grpcio-compiler generated nothing (no service?)"
    );
    for f in files {
        write(&out.join(&f.name), &f.content);
    }
    // The stubs name the messages as `super::<module>::...`.
    let mut module = String::new();
    for (_, m) in PROTOS {
        module.push_str(&format!("pub mod {m};\npub mod {m}_grpc;\n"));
    }
    write(&out.join("mod.rs"), module.as_bytes());
}

fn write(path: &Path, content: &[u8]) {
    std::fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
