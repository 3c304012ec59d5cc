//! Guards the sans-IO contract (ARCHITECTURE.md): `core/src` performs no
//! IO and reads no clock, and `core` depends on no runtime.
#![cfg(test)]
use std::fs;
use std::path::{Path, PathBuf};

const FORBIDDEN_IN_SOURCE: &[&str] = &[
    "std::net",
    "std::fs",
    "std::thread",
    "std::process",
    "std::env",
    "Instant::now",
    "SystemTime::now",
    "tokio",
    "mio::",
    "async_io",
];

const FORBIDDEN_DEPENDENCIES: &[&str] = &[
    "tokio",
    "mio",
    "smol",
    "async-io",
    "async-std",
    "futures-io",
    "socket2",
    "libc",
];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.map(|e| e.path()).unwrap_or_default();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn core_sources_do_no_io_and_read_no_clock() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 5, "found only {files:?}");
    let mut violations = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap_or_default();
        // Unit tests may use the clock to make a starting instant.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        // Test-only files (a module's `tests.rs`, or one compiled only under
        // `#![cfg(test)]`) drive sessions with a real clock.
        let is_test_file = file.file_name().is_some_and(|name| name == "tests.rs")
            || text.trim_start().starts_with("#![cfg(test)]");
        for (number, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if is_test_file || line.starts_with("//") {
                continue;
            }
            for needle in FORBIDDEN_IN_SOURCE {
                if line.contains(needle) {
                    violations.push(format!("{}:{}: {needle}", file.display(), number + 1));
                }
            }
        }
    }
    assert!(violations.is_empty(), "IO in core: {violations:#?}");
}

#[test]
fn core_depends_on_no_runtime() {
    let manifest = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .unwrap_or_default();
    let mut section = String::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        // Target-specific sections too: `[target.'cfg(..)'.dependencies]`.
        if section != "[dependencies]" && !section.ends_with(".dependencies]") {
            continue;
        }
        let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
        assert!(
            !FORBIDDEN_DEPENDENCIES.contains(&name),
            "core depends on runtime crate {name}"
        );
    }
}

#[test]
fn the_guard_itself_catches_io() {
    // If the needles were mistyped, the guard would pass vacuously.
    let sample = "let s = std::net::TcpStream::connect(a); let t = Instant::now();";
    let hits = FORBIDDEN_IN_SOURCE
        .iter()
        .filter(|needle| sample.contains(*needle))
        .count();
    assert_eq!(hits, 2);
}
