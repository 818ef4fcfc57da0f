//! Writes the C header from the crate's `extern "C"` items (cbindgen), into OUT_DIR; the
//! tests compare it with the committed `include/postline.h`, so the two never drift.

fn main() {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    println!("cargo:rerun-if-changed=src/lib.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config =
        cbindgen::Config::from_file(format!("{crate_dir}/cbindgen.toml")).expect("cbindgen.toml");
    let mut header = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("the C header")
        .write(&mut header);
    // cbindgen puts a conditional field's semicolon after its `#endif`, which leaves an
    // empty declaration in the struct when the condition is false (an error under
    // -pedantic): the semicolon goes inside.
    let header = String::from_utf8(header)
        .expect("UTF-8")
        .replace("\n#endif\n  ;\n", ";\n#endif\n");
    assert!(
        !header.contains("#endif\n  ;"),
        "cbindgen's output changed: a conditional field's semicolon is still after #endif"
    );
    std::fs::write(format!("{out}/postline.h"), header).expect("writing the C header");
}
