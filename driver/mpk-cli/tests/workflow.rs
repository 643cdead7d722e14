//! Issue 18: the Actions matrix picks each model's path by its lock's size
//! (`.github/scripts/model-matrix.py` with the workflow's own
//! `MAX_IMAGE_BYTES`): at most the threshold, `nix build` with an image;
//! above it, `mpk reproduce --lock -o` without one. That the two paths
//! publish the same documents is tested in `hub_cli.rs`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn workflow() -> String {
    std::fs::read_to_string(repo(".github/workflows/build.yml")).unwrap()
}

/// The workflow's threshold, as it is set there.
fn threshold() -> u64 {
    let w = workflow();
    let line = w
        .lines()
        .find(|l| l.trim_start().starts_with("MAX_IMAGE_BYTES:"))
        .expect("build.yml sets MAX_IMAGE_BYTES");
    line.split(':')
        .nth(1)
        .unwrap()
        .trim()
        .trim_matches('"')
        .parse()
        .unwrap()
}

fn matrix(models: &Path, limit: u64) -> Result<Vec<Value>, String> {
    let o = Command::new("python3")
        .arg(repo(".github/scripts/model-matrix.py"))
        .arg(models)
        .arg(limit.to_string())
        .output()
        .expect("python3 runs");
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    Ok(v.as_array().unwrap().clone())
}

fn lock(dir: &Path, short: &str, sizes: &[u64]) {
    let files: Vec<Value> = sizes
        .iter()
        .enumerate()
        .map(|(i, s)| serde_json::json!({"path": format!("f{i}"), "size": s}))
        .collect();
    let doc = serde_json::json!({"version": 1, "identity": "a/b@0", "files": files});
    std::fs::write(dir.join(format!("{short}.lock.json")), doc.to_string()).unwrap();
}

#[test]
fn the_matrix_picks_each_path_by_the_locks_size() {
    let limit = threshold();
    assert_eq!(limit, 5 << 30, "the documented default: 5 GiB");
    let t = tempfile::tempdir().unwrap();
    lock(t.path(), "at-limit", &[limit - 1000, 1000]);
    lock(t.path(), "one-over", &[limit, 1]);
    lock(t.path(), "gemma-4-31b", &[4_900_000_000; 13]);
    lock(t.path(), "tiny", &[10, 0]);
    std::fs::write(t.path().join("gemma-4-31b.schema"), "modelwrap-v2\n").unwrap();
    let m = matrix(t.path(), limit).unwrap();
    let got: Vec<(&str, &str, u64, &str)> = m
        .iter()
        .map(|e| {
            (
                e["model"].as_str().unwrap(),
                e["path"].as_str().unwrap(),
                e["bytes"].as_u64().unwrap(),
                e["schema"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("at-limit", "nix", limit, "modelwrap-v1"),
            ("gemma-4-31b", "stream", 13 * 4_900_000_000, "modelwrap-v2"),
            ("one-over", "stream", limit + 1, "modelwrap-v1"),
            ("tiny", "nix", 10, "modelwrap-v1"),
        ]
    );
    // The project's own models, with the workflow's threshold.
    let own = matrix(&repo("models"), limit).unwrap();
    assert!(!own.is_empty());
    for e in &own {
        let want = if e["bytes"].as_u64().unwrap() <= limit {
            "nix"
        } else {
            "stream"
        };
        assert_eq!(e["path"], want, "{e}");
    }
}

#[test]
fn the_matrix_refuses_names_and_schemas_that_would_reach_a_shell() {
    let t = tempfile::tempdir().unwrap();
    lock(t.path(), "x;rm -rf ~", &[1]);
    assert!(matrix(t.path(), 10).unwrap_err().contains("short name"));
    let t = tempfile::tempdir().unwrap();
    lock(t.path(), "ok", &[1]);
    std::fs::write(t.path().join("ok.schema"), "modelwrap-v3").unwrap();
    assert!(matrix(t.path(), 10).unwrap_err().contains("modelwrap-v3"));
    let t = tempfile::tempdir().unwrap();
    lock(t.path(), "neg", &[1]);
    std::fs::write(
        t.path().join("neg.lock.json"),
        r#"{"version": 1, "files": [{"size": -5}]}"#,
    )
    .unwrap();
    assert!(matrix(t.path(), 10).unwrap_err().contains("size"));
}

#[test]
fn each_path_is_the_one_its_matrix_entry_names() {
    let w = workflow();
    // The nix path builds the image, the stream path publishes without one,
    // each guarded by the matrix's choice; base images come from `bases`.
    for needle in [
        "if: matrix.path == 'nix'",
        "nix build -L \".#model-$MODEL\"",
        "if: matrix.path == 'stream'",
        "mpk reproduce --lock \"models/$MODEL.lock.json\" --schema \"$SCHEMA\"",
        "needs: [list, bases]",
        "nix-store --export",
        "--import < closure/store.nar",
        "HF_TOKEN: ${{ secrets.HF_TOKEN }}",
        "model-matrix.py models \"$MAX_IMAGE_BYTES\"",
    ] {
        assert!(w.contains(needle), "build.yml lacks `{needle}`");
    }
}
