//! Build script: only the `record` feature needs anything. It asks the Python that
//! pyo3-ffi links against (PYO3_PYTHON, else python3 on PATH) where its libpython lives,
//! so the binary finds it at run time (rpath), and which executable it is, so the
//! embedded interpreter computes its prefix and `sys.executable` as that python does.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    if std::env::var_os("CARGO_FEATURE_RECORD").is_none() {
        return;
    }
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let out = Command::new(&python)
        .args([
            "-c",
            "import sys, sysconfig; print(sysconfig.get_config_var('LIBDIR') or ''); print(sys.executable)",
        ])
        .output()
        .unwrap_or_else(|e| panic!("the record feature needs a python3 ({python}): {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let libdir = lines.next().unwrap_or("").trim().to_string();
    let exe = lines.next().unwrap_or("").trim().to_string();
    if !libdir.is_empty() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{libdir}");
    }
    println!("cargo:rustc-env=PYALLOC_RECORD_PYTHON={exe}");
}
