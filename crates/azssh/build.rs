//! Embeds `scripts/*.rhai` (runbooks) and `stdlib/*.rhai` (modules) into the binary, so an
//! installed `azssh` needs no files beside it and a new file is bundled without code changes.
use std::{env, fs, io::Write, path::Path};

fn main() {
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("bundled.rs");
    let mut file = fs::File::create(&out).expect("OUT_DIR is writable");
    for (dir, name) in [("scripts", "RUNBOOKS"), ("stdlib", "STDLIB")] {
        println!("cargo:rerun-if-changed={dir}");
        let mut entries: Vec<_> = fs::read_dir(dir)
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.retain(|p| p.extension().is_some_and(|e| e == "rhai"));
        entries.sort();
        writeln!(file, "pub static {name}: &[(&str, &str)] = &[").expect("write");
        for path in entries {
            println!("cargo:rerun-if-changed={}", path.display());
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("utf-8 file name");
            let abs = fs::canonicalize(&path).expect("bundled file exists");
            writeln!(
                file,
                "    ({stem:?}, include_str!({:?})),",
                abs.display().to_string()
            )
            .expect("write");
        }
        writeln!(file, "];").expect("write");
    }
}
