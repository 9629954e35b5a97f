//! Registers the Redis scripts: every `src/redis/scripts/<strategy>.lua` is
//! the script of the strategy of that name (traffik-core's
//! `StrategyKind::as_str`), sent as `lib/prelude.lua`, `lib/args.lua`, then
//! each library a `-- uses: <lib>` line names (`lib/<lib>.lua`), then the
//! file itself. A `-- keys: <n>` line says how many Redis keys it takes
//! (default 1). Adding a strategy's script is adding its file: no Rust
//! changes here. `src/redis/scripts/refund/<strategy>.lua` is the strategy's
//! refund, put together the same way.
//!
//! The group script (`GROUP`) decides several limits in one call: the
//! prelude, then each strategy's libraries and file wrapped in a function of
//! the arguments `args.lua` would have read, then `lib/group.lua`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

/// The `.lua` files of `dir`, sorted.
fn scripts_in(dir: &Path) -> Vec<PathBuf> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|_| panic!("{} exists", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "lua"))
        .collect();
    files.sort();
    files
}

/// A script's name, how many keys it takes, and the files it is sent as
/// (prelude, arguments, the libraries it uses, itself).
fn parts(lib_dir: &Path, path: &Path) -> (String, usize, Vec<PathBuf>) {
    println!("cargo:rerun-if-changed={}", path.display());
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("a utf-8 name")
        .to_owned();
    let text = fs::read_to_string(path).expect("a readable script");
    let mut parts = vec![lib_dir.join("prelude.lua"), lib_dir.join("args.lua")];
    let mut keys = 1usize;
    for line in text.lines() {
        if let Some(n) = line.trim().strip_prefix("-- keys:") {
            keys = n.trim().parse().expect("`-- keys: <n>` takes a number");
        }
        if let Some(libs) = line.trim().strip_prefix("-- uses:") {
            for lib in libs.split(',').map(str::trim).filter(|l| !l.is_empty()) {
                let lib = lib_dir.join(format!("{lib}.lua"));
                assert!(
                    lib.is_file(),
                    "{} uses a missing {}",
                    path.display(),
                    lib.display()
                );
                parts.push(lib);
            }
        }
    }
    parts.push(path.to_path_buf());
    (name, keys, parts)
}

fn include(path: &Path) -> String {
    format!("include_str!({:?})", path.display().to_string())
}

fn main() {
    let dir = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("src/redis/scripts");
    let lib_dir = dir.join("lib");
    let mut out = String::from(
        "/// `(strategy name, keys taken, script source)` for every script in\n\
         /// `src/redis/scripts`.\n\
         pub(super) const SCRIPTS: &[(&str, usize, &str)] = &[\n",
    );
    let mut group = vec![
        include(&lib_dir.join("prelude.lua")),
        "\"local now = now_ms()\\nlocal strategies = {}\\n\"".to_owned(),
    ];
    let mut key_counts = Vec::new();
    for (position, path) in scripts_in(&dir).iter().enumerate() {
        let (name, keys, parts) = parts(&lib_dir, path);
        let includes: Vec<String> = parts.iter().map(|p| include(p)).collect();
        // In the group script: the libraries and the file, in a function.
        group.push(format!(
            "\"strategies[{}] = function(KEYS, count, period, drain, unit, burst, cost, peek, margin)\\n\"",
            position + 1
        ));
        group.extend(includes.iter().skip(2).cloned());
        group.push("\"\\nend\\n\"".to_owned());
        key_counts.push(keys.to_string());
        let _ = writeln!(
            out,
            "    ({name:?}, {keys}, concat!({})),",
            includes.join(", ")
        );
    }
    out.push_str("];\n");
    out.push_str(
        "/// `(strategy name, keys taken, script source)` for every refund script\n\
         /// in `src/redis/scripts/refund`.\n\
         pub(super) const REFUNDS: &[(&str, usize, &str)] = &[\n",
    );
    for path in scripts_in(&dir.join("refund")) {
        let (name, keys, parts) = parts(&lib_dir, &path);
        let includes: Vec<String> = parts.iter().map(|p| include(p)).collect();
        let _ = writeln!(
            out,
            "    ({name:?}, {keys}, concat!({})),",
            includes.join(", ")
        );
    }
    out.push_str("];\n");
    group.push(format!(
        "\"local key_counts = {{{}}}\\n\"",
        key_counts.join(", ")
    ));
    group.push(include(&lib_dir.join("group.lua")));
    let _ = writeln!(
        out,
        "/// The group script: every limit of one request in one call.\n\
         pub(super) const GROUP: &str = concat!({});",
        group.join(", ")
    );
    let target = Path::new(&env::var("OUT_DIR").expect("cargo sets it")).join("redis_scripts.rs");
    fs::write(target, out).expect("OUT_DIR is writable");
}
