//! Link settings so that the binaries find libtorch without LD_LIBRARY_PATH and really use
//! CUDA, and the small C++ file of libtorch kernels that tch does not bind (csrc/fused.cpp).
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/fused.cpp");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let include = Path::new(&lib).join("..").join("include");
    cc::Build::new()
        .cpp(true)
        .file("csrc/fused.cpp")
        .include(&include)
        .flag("-std=c++17")
        // The ABI of PyTorch's own builds since 2.7 (tch's build uses the same default).
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile("faststyle_fused");
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
