//! Generates the protobuf message types from `proto/*.proto` with the pure-Rust parser (no protoc).

fn main() {
    protobuf_codegen::Codegen::new()
        .pure()
        .includes(["proto"])
        .input("proto/sdk.proto")
        .input("proto/link.proto")
        .cargo_out_dir("protos")
        .run_from_script();
}
