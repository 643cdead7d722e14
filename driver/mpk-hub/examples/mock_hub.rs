//! The mock Hub as a process, for the benchmark's network shape
//! (`tests/bench/pack-bench.sh`, `SHAPE=hub`): serves the files of a folder
//! as one repo at one commit (`*.safetensors`, `*.bin` and `*.gguf` as LFS
//! files, redirected to the mock's CDN path; the rest served by the
//! resolver), with connections kept alive and optionally every connection
//! capped at a throughput, and
//! prints its endpoint on the first line of standard output. It runs until
//! its standard input closes.
//!
//! Usage: `mock_hub DIR ORG/NAME COMMIT [CAP_BYTES_PER_SEC]`

use mpk_hub::mock::MockHub;
use std::io::Write;
use std::path::Path;

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read the model folder")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            let rel = p.strip_prefix(root).expect("below the root");
            let name = rel.to_str().expect("UTF-8 names").to_owned();
            out.push((name, std::fs::read(&p).expect("read a file")));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: mock_hub DIR ORG/NAME COMMIT [CAP_BYTES_PER_SEC]");
        std::process::exit(2);
    }
    let root = Path::new(&args[1]);
    let mut files = Vec::new();
    walk(root, root, &mut files);
    let hub = MockHub::start();
    hub.put(
        &args[2],
        "main",
        &args[3],
        files
            .iter()
            .map(|(p, d)| {
                let lfs = [".safetensors", ".bin", ".gguf"]
                    .iter()
                    .any(|x| p.ends_with(x));
                (p.as_str(), d.clone(), lfs)
            })
            .collect(),
    );
    drop(files);
    let cap = args
        .get(4)
        .and_then(|c| c.parse::<u64>().ok())
        .filter(|c| *c > 0);
    hub.cap(cap);
    // As a CDN does: several requests per connection.
    hub.keep_alive(true);
    println!("{}", hub.endpoint);
    std::io::stdout().flush().expect("stdout");
    // Until the benchmark closes our standard input.
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
}
