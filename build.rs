//! Link settings so that the binaries find libtorch without LD_LIBRARY_PATH and really use CUDA.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    // An rpath to the libtorch folder that the build used: no LD_LIBRARY_PATH at run time.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    // The linker drops libraries "as needed"; nothing references libtorch_cuda's symbols
    // directly, so without this CUDA would never be initialised even on a GPU machine.
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
