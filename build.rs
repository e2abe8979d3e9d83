//! Compiles the rule pack (`rules/`) and the report definitions (`reports/`) into the binary,
//! so `auditlake detect`, `rules …` and `report` work from any directory.
//!
//! A build script rather than a directory-embedding macro crate: `rerun-if-changed` on a
//! directory makes cargo rescan it, so an added or removed rule folder rebuilds the binary
//! (a macro only tracks the files it saw), and it costs no new dependency.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Files of `dir` (recursively) that belong in the binary, as paths relative to `dir`.
fn files(dir: &Path, skip: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for entry in entries {
            let p = entry.expect("directory entry").path();
            let rel = p.strip_prefix(dir).expect("under dir").to_path_buf();
            let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') || skip(&rel) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

fn rel_str(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_str().expect("UTF-8 file name"))
        .collect::<Vec<_>>()
        .join("/")
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let rules = root.join("rules");
    let reports = root.join("reports");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", rules.display());
    println!("cargo:rerun-if-changed={}", reports.display());

    let mut code = String::new();
    // The fixture writer and the docs are for authors, not for the running pack.
    let rule_files = files(&rules, &|rel| {
        rel.starts_with("tools") || rel == Path::new("README.md") || rel.ends_with("__pycache__")
    });
    code.push_str(
        "/// The rule pack of this build (`rules/`).\n\
         pub static RULES: auditlake_detect::Embedded = auditlake_detect::Embedded {\n    \
         root: \"<built-in rules>\",\n    files: &[\n",
    );
    for rel in &rule_files {
        writeln!(
            code,
            "        ({:?}, include_bytes!({:?})),",
            rel_str(rel),
            rules.join(rel).to_str().expect("UTF-8 path")
        )
        .unwrap();
    }
    code.push_str("    ],\n};\n\n");
    let report_files = files(&reports, &|rel| {
        rel.extension().is_none_or(|e| e != "toml") || rel.components().count() > 1
    });
    code.push_str(
        "/// The report definitions of this build (`reports/*.toml`).\n\
         pub static REPORTS: &[(&str, &str)] = &[\n",
    );
    for rel in &report_files {
        writeln!(
            code,
            "    ({:?}, include_str!({:?})),",
            rel_str(rel),
            reports.join(rel).to_str().expect("UTF-8 path")
        )
        .unwrap();
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("pack.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
