//! Stamps the binary with the commit it was built from and the build date, for
//! `wxauth --version` and `/healthz`.
//!
//! The date is the commit's date, or `SOURCE_DATE_EPOCH` when set, never the clock: two
//! builds of one commit make the same bytes (`.ci/run` compares two release builds, and a
//! release can be rebuilt and checked against its `SHA256SUMS`). Without git or outside a
//! checkout both read `unknown`, unless `SOURCE_DATE_EPOCH` gives the date.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let commit = git(&dir, &["rev-parse", "--short=12", "HEAD"]);
    if commit.is_some() {
        watch_head(&dir);
    }
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .or_else(|| {
            commit.as_ref()?;
            git(&dir, &["show", "-s", "--format=%ct", "HEAD"])?
                .parse()
                .ok()
        });
    let date = epoch.map_or_else(|| "unknown".to_owned(), date_of);
    println!(
        "cargo:rustc-env=BUILD_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!("cargo:rustc-env=BUILD_DATE={date}");
}

/// Git's answer, only when `dir` is the top of a checkout: a source tree unpacked inside
/// some other repository must not take that repository's commit.
fn git(dir: &str, args: &[&str]) -> Option<String> {
    let run = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        out.status.success().then_some(())?;
        Some(String::from_utf8(out.stdout).ok()?.trim().to_owned())
    };
    let top = run(&["rev-parse", "--show-toplevel"])?;
    let same = Path::new(&top).canonicalize().ok()? == Path::new(dir).canonicalize().ok()?;
    same.then(|| run(args)).flatten().filter(|s| !s.is_empty())
}

/// Rebuild when HEAD moves: HEAD itself, the branch it names, and packed-refs (where the
/// branch lives once git has packed it). Only existing files: cargo reruns a build
/// script on every build while a watched path is missing.
fn watch_head(dir: &str) {
    let mut paths = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        paths.push(branch);
    }
    for name in paths {
        if let Some(path) = git(
            dir,
            &["rev-parse", "--path-format=absolute", "--git-path", &name],
        ) && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// `YYYY-MM-DD` (UTC) of a Unix time, by the days-to-civil algorithm of Howard
/// Hinnant's date library.
fn date_of(epoch: i64) -> String {
    let z = epoch.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
