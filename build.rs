//! Link settings so that the binaries find libtorch without LD_LIBRARY_PATH and really use
//! CUDA, and the small C++ files of libtorch code that tch does not bind: csrc/fused.cpp (fused
//! kernels) and csrc/dist.cpp + csrc/dist_nccl.cpp (c10d, for distributed training).
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib = PathBuf::from(lib);
    let include = lib.join("..").join("include");
    let cuda = lib.join("libtorch_cuda.so").exists();

    compile("faststyle_fused", "csrc/fused.cpp", &include, &[], &[]);
    compile(
        "faststyle_dist",
        "csrc/dist.cpp",
        &include,
        &[Path::new("csrc/gloo-decls").to_path_buf()],
        &["USE_C10D_GLOO"],
    );
    // NCCL's backend needs CUDA's and NCCL's headers, which the CUDA wheel of PyTorch brings
    // beside itself (site-packages/nvidia/…); without them distributed training is CPU-only.
    match nccl_includes(&lib).filter(|_| cuda) {
        Some(dirs) => compile(
            "faststyle_dist_nccl",
            "csrc/dist_nccl.cpp",
            &include,
            &dirs,
            &["USE_C10D_NCCL", "FASTSTYLE_NCCL"],
        ),
        None => compile(
            "faststyle_dist_nccl",
            "csrc/dist_nccl.cpp",
            &include,
            &[],
            &[],
        ),
    }

    // An rpath to the libtorch folder that the build used: no LD_LIBRARY_PATH at run time.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // The linker drops libraries "as needed"; nothing references libtorch_cuda's symbols
    // directly, so without this CUDA would never be initialised even on a GPU machine.
    if cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-lc10_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

/// The include folders of CUDA's runtime and of NCCL: those of the pip wheels beside torch,
/// else $CUDA_HOME's (NCCL then from the system's include path).
fn nccl_includes(lib: &Path) -> Option<Vec<PathBuf>> {
    let site = lib.join("..").join("..");
    let nvidia = site.join("nvidia");
    let has = |dir: &Path, file: &str| dir.join(file).exists();
    let mut cuda_dirs: Vec<PathBuf> = std::fs::read_dir(&nvidia)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path().join("include"))
                .collect()
        })
        .unwrap_or_default();
    if let Ok(home) = std::env::var("CUDA_HOME") {
        cuda_dirs.push(Path::new(&home).join("include"));
    }
    cuda_dirs.push(PathBuf::from("/usr/local/cuda/include"));
    // crt/ and nv/ come from the nvidia-cuda-crt and nvidia-cuda-cccl wheels.
    let cuda = cuda_dirs
        .iter()
        .find(|d| {
            has(d, "cuda_runtime_api.h") && has(d, "crt/host_config.h") && has(d, "nv/target")
        })?
        .clone();
    let mut dirs = vec![cuda.clone()];
    let nccl = [
        nvidia.join("nccl").join("include"),
        cuda,
        "/usr/include".into(),
    ]
    .into_iter()
    .find(|d| has(d, "nccl.h"))?;
    dirs.push(nccl);
    Some(dirs)
}

/// Compiles one C++ file into a static library, unless the same file was already compiled with
/// the same settings (cc recompiles every file whenever this script reruns, and a file that
/// includes c10d's headers takes minutes).
fn compile(name: &str, file: &str, include: &Path, extra: &[PathBuf], defines: &[&str]) {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let source = std::fs::read(file).unwrap_or_default();
    let mut hasher = DefaultHasher::new();
    source.hash(&mut hasher);
    include.hash(&mut hasher);
    extra.hash(&mut hasher);
    defines.hash(&mut hasher);
    // The headers under csrc/ (csrc/gloo-decls) count too.
    for dir in extra.iter().filter(|d| d.starts_with("csrc")) {
        for entry in walk(dir) {
            std::fs::read(&entry).unwrap_or_default().hash(&mut hasher);
        }
    }
    let stamp = out.join(format!("{name}.stamp"));
    let key = format!("{:016x}", hasher.finish());
    let archive = out.join(format!("lib{name}.a"));
    if archive.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(key.as_str()) {
        println!("cargo:rustc-link-search=native={}", out.display());
        println!("cargo:rustc-link-lib=static={name}");
        return;
    }
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file(file)
        .include(include)
        // torch/types.h and the like, which c10d's headers reach through torch's C++ API.
        .include(
            include
                .join("torch")
                .join("csrc")
                .join("api")
                .join("include"),
        )
        .flag("-std=c++17")
        // The ABI of PyTorch's own builds since 2.7 (tch's build uses the same default).
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false);
    for dir in extra {
        build.include(dir);
    }
    for define in defines {
        build.define(define, None);
    }
    build.compile(name);
    std::fs::write(&stamp, key).expect("cannot write the build stamp");
}

/// The files under a folder, sorted.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}
