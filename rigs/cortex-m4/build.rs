//! Puts memory.x where cortex-m-rt's link.x finds it, and links the C API's static library
//! for thumbv7em-none-eabi, as a device's firmware links it (built by bench/embedded-budget:
//! `cargo build -p postline-capi --profile budget --target thumbv7em-none-eabi`, found in
//! `POSTLINE_CAPI_LIB_DIR`).
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    fs::copy("memory.x", out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    let lib = env::var("POSTLINE_CAPI_LIB_DIR")
        .unwrap_or_else(|_| "../../target/budget-m4/thumbv7em-none-eabi/budget".to_owned());
    let lib = fs::canonicalize(&lib)
        .unwrap_or_else(|e| panic!("{lib}: {e} (build the C API for thumbv7em-none-eabi first)"));
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=static=postline_capi");
    println!(
        "cargo:rerun-if-changed={}",
        lib.join("libpostline_capi.a").display()
    );
    println!("cargo:rerun-if-env-changed=POSTLINE_CAPI_LIB_DIR");
}
