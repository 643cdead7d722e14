//! Hugging Face Hub commands, flattened into the top level: `mpk lock`,
//! `mpk fetch`, `mpk build`, `mpk reproduce` and `mpk identity`:
//! arguments → `mpk_hub` and the engine (`mpk_pack::build`,
//! `mpk_pack::reproduce`), download progress lines, and the results
//! printed.

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use clap::{Args, Subcommand};
use mpk_hub::fetch::{Event, fetch_lock, lock_repo};
use mpk_hub::{HfCache, Hub, HubConfig, Lock};
use mpk_model::{Identity, Reference};
use mpk_pack::{build, reproduce};

use crate::schema_arg::{ReproduceSchemaArg, SchemaArg};

/// Hub subcommands, flattened into the top level.
#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// Pin a Hub repo at a commit: write a lock file (JSON, schema version 1).
    Lock(LockArgs),
    /// Download every file of a lock into the Hugging Face cache, verified.
    Fetch(FetchArgs),
    /// Lock (or use --lock), fetch and pack: `OUTDIR/<org>/<name>/<commit>.{mpk,info,manifest.json}`.
    Build(BuildArgs),
    /// Recompute a reference without writing an image; exit 0 only if it equals --expect.
    Reproduce(ReproduceArgs),
    /// Print the content-derived revision of a folder (for private weights).
    Identity(IdentityArgs),
}

/// Arguments of `mpk lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// `ORG/NAME[@REV]` (REV: branch, tag or commit; default `main`).
    pub repo: String,
    /// Write the lock here (default: standard output).
    #[arg(short = 'o', long = "output")]
    pub output: Option<Utf8PathBuf>,
    /// Pin only the files these patterns select (repeatable; `*`, `?`, `**`, `dir/`).
    #[arg(long)]
    pub include: Vec<String>,
    /// No progress lines.
    #[arg(long, short)]
    pub quiet: bool,
    /// Connections at once for downloads (1 to 64; default 8, or
    /// `MPK_CONNECTIONS`): files in parallel, large files in 8 MiB ranges.
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
}

/// Arguments of `mpk fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The lock file.
    pub lock: Utf8PathBuf,
    /// No progress lines.
    #[arg(long, short)]
    pub quiet: bool,
    /// Connections at once for downloads (1 to 64; default 8, or
    /// `MPK_CONNECTIONS`): files in parallel, large files in 8 MiB ranges.
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
}

/// Arguments of `mpk build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// `ORG/NAME[@REV]` (REV: branch, tag or commit; default `main`, or the lock's).
    pub repo: String,
    /// Output folder; files go to `<org>/<name>/<commit>.*` below it.
    #[arg(short = 'o', long = "output")]
    pub output: Utf8PathBuf,
    /// Use this lock instead of locking now.
    #[arg(long)]
    pub lock: Option<Utf8PathBuf>,
    /// Pin only the files these patterns select (without --lock).
    #[arg(long)]
    pub include: Vec<String>,
    /// Hashing threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The schema (the encoder is part of the commitment).
    #[arg(long, value_enum, default_value = "modelwrap-v1")]
    pub schema: SchemaArg,
    /// Replace existing outputs.
    #[arg(long)]
    pub force: bool,
    /// No progress lines.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the manifest (JSON) instead of the bare reference.
    #[arg(long)]
    pub json: bool,
    /// A base image folder (`vm-images/<name>`, holding `image.json`); for each,
    /// `<commit>.<name>.deployment.json` is written (as `mpk measure
    /// deployment` would). Repeatable.
    #[arg(long = "base", value_name = "DIR")]
    pub bases: Vec<std::path::PathBuf>,
    /// Write `<commit>.empk` (encrypted, as `mpk pack --encrypt`) instead
    /// of `<commit>.mpk`; `<commit>.info` holds the encrypted reference and
    /// the deployments' command lines mark the model `:crypt`.
    #[arg(long, requires = "key_file")]
    pub encrypt: bool,
    /// The master key for --encrypt (64 bytes, from `mpk keygen`).
    #[arg(long = "key-file", requires = "encrypt")]
    pub key_file: Option<Utf8PathBuf>,
    /// Connections at once for downloads (1 to 64; default 8, or
    /// `MPK_CONNECTIONS`): files in parallel, large files in 8 MiB ranges.
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
}

/// Arguments of `mpk reproduce`.
#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// `ORG/NAME@REV`: the identity (with --dir), or the repo to lock and fetch.
    pub id: Option<String>,
    /// Local files instead of the Hub.
    #[arg(long, conflicts_with = "lock")]
    pub dir: Option<Utf8PathBuf>,
    /// The lock to fetch (required when it pins part of a repo).
    #[arg(long)]
    pub lock: Option<Utf8PathBuf>,
    /// The identity (with --dir), instead of the positional argument.
    #[arg(long)]
    pub identity: Option<Identity>,
    /// The expected reference, or an `.info` file holding it (optional
    /// with --output; with it, a difference publishes nothing).
    #[arg(long, required_unless_present = "output")]
    pub expect: Option<String>,
    /// From a lock: also publish what `mpk build -o OUTDIR` publishes
    /// beside its image, byte for byte (`<org>/<name>/<commit>.info` and
    /// `.manifest.json`, and a deployment per --base), without writing any
    /// image: for models larger than the disk. Needs a concrete --schema.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "OUTDIR",
        conflicts_with = "dir"
    )]
    pub output: Option<Utf8PathBuf>,
    /// With --output: a base image folder; a deployment document is
    /// written for it, as `mpk build --base` does. Repeatable.
    #[arg(long = "base", value_name = "DIR", requires = "output")]
    pub bases: Vec<std::path::PathBuf>,
    /// With --output: replace existing documents.
    #[arg(long, requires = "output")]
    pub force: bool,
    /// The schema to reproduce with; `auto` tries modelwrap-v1, then
    /// modelwrap-v2, and says which one matched (a reference does not name
    /// its schema).
    #[arg(long, value_enum, default_value = "modelwrap-v1")]
    pub schema: ReproduceSchemaArg,
    /// Hashing threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress lines.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print `{identity, computed, expected, match}` as JSON.
    #[arg(long)]
    pub json: bool,
    /// With --dir: follow symlinks to any file, as `mpk pack
    /// --allow-external-symlinks` does.
    #[arg(long, requires = "dir")]
    pub allow_external_symlinks: bool,
    /// Connections at once for downloads (1 to 64; default 8, or
    /// `MPK_CONNECTIONS`): files in parallel, large files in 8 MiB ranges.
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
}

/// Arguments of `mpk identity`.
#[derive(Debug, Args)]
pub struct IdentityArgs {
    /// The model folder (normalised as `mpk pack` does).
    pub dir: Utf8PathBuf,
    /// Follow symlinks to any file, as `mpk pack --allow-external-symlinks`
    /// does.
    #[arg(long)]
    pub allow_external_symlinks: bool,
}

/// Runs a Hub subcommand.
pub fn run(c: HubCommand) -> Result<()> {
    match c {
        HubCommand::Lock(a) => run_lock(a),
        HubCommand::Fetch(a) => run_fetch(a),
        HubCommand::Build(a) => run_build(a),
        HubCommand::Reproduce(a) => run_reproduce(a),
        HubCommand::Identity(a) => {
            let symlinks = crate::symlinks(a.allow_external_symlinks);
            outln!("{}", reproduce::content_revision(&a.dir, symlinks)?);
            Ok(())
        }
    }
}

/// Download progress: one bar over every file (bytes of all connections,
/// their total throughput, ETA) on a terminal, plain lines otherwise,
/// nothing with `--quiet`.
fn printer(quiet: bool) -> impl FnMut(Event<'_>) {
    let mut bar: Option<indicatif::ProgressBar> = None;
    move |e| {
        if quiet {
            return;
        }
        let line = |s: String| match &bar {
            Some(b) => b.println(s),
            None => eprintln!("{s}"),
        };
        match e {
            Event::Total(n) => {
                if let Some(old) = bar.take() {
                    old.finish_and_clear();
                }
                bar = crate::progress::bytes_bar(n, "downloading", false);
            }
            Event::Cached(p, n) => {
                line(format!("cached     {p} ({n} bytes, verified)"));
                crate::progress::inc(&bar, n);
            }
            Event::Start(p, from, n) => {
                if from > 0 {
                    line(format!(
                        "resuming   {p}: {from} of {n} bytes kept (re-hashed)"
                    ));
                } else {
                    line(format!("fetching   {p} ({n} bytes)"));
                }
                crate::progress::inc(&bar, from);
            }
            Event::Done(p) => line(format!("verified   {p}")),
            Event::Retry(p, why) => line(format!("retrying   {p}: {why}")),
            Event::Bytes(n) => crate::progress::inc(&bar, n),
        }
        if let Some(b) = bar.take_if(|b| b.length().is_some_and(|l| b.position() >= l)) {
            b.finish_and_clear();
        }
    }
}

fn hub(connections: Option<usize>) -> Result<(Hub, HfCache)> {
    let mut cfg = HubConfig::from_env().context("bad Hub settings")?;
    if let Some(n) = connections {
        cfg.connections =
            mpk_hub::sched::check_connections(Some(n), &format!("--connections {n}"))?;
    }
    Ok((Hub::new(cfg)?, HfCache::from_env()))
}

fn run_lock(a: LockArgs) -> Result<()> {
    let (hub, cache) = hub(a.connections)?;
    let (repo, rev) = build::split_repo(&a.repo);
    let include = (!a.include.is_empty()).then_some(a.include);
    let lock = lock_repo(
        &hub,
        Some(&cache),
        repo,
        rev.unwrap_or("main"),
        include,
        &mut printer(a.quiet),
    )
    .with_context(|| format!("cannot lock {}", a.repo))?;
    match a.output {
        Some(p) => write_atomic(&p, lock.to_json().as_bytes())?,
        None => out!("{}", lock.to_json()),
    }
    Ok(())
}

fn run_fetch(a: FetchArgs) -> Result<()> {
    let (hub, cache) = hub(a.connections)?;
    let lock = Lock::load(a.lock.as_std_path())?;
    let dir = fetch_lock(&hub, &cache, &lock, &mut printer(a.quiet))
        .with_context(|| format!("cannot fetch {}", lock.identity))?;
    outln!("{}", dir.display());
    Ok(())
}

fn run_build(a: BuildArgs) -> Result<()> {
    let (hub, cache) = hub(a.connections)?;
    let key = match &a.key_file {
        Some(k) if a.encrypt => Some(crate::keys::read_master_key(k)?),
        _ => None,
    };
    let built = build::build(
        build::BuildOptions {
            repo: a.repo,
            output: a.output,
            lock: a.lock,
            include: a.include,
            threads: a.threads,
            schema: a.schema.into(),
            force: a.force,
            bases: a.bases,
            key,
        },
        &hub,
        &cache,
        &mut printer(a.quiet),
        &crate::progress::Bars::new(a.quiet),
    )?;
    if a.json {
        out!("{}", built.manifest_json);
    } else if let Some(e) = &built.manifest.encryption {
        outln!("{}", e.encrypted_reference);
    } else {
        outln!("{}", built.manifest.reference);
    }
    Ok(())
}

fn run_reproduce(a: ReproduceArgs) -> Result<()> {
    if a.output.is_some() {
        return run_reproduce_publish(a);
    }
    let expect = crate::reference::load(a.expect.as_deref().expect("required by clap"))?;
    let schemas: reproduce::Schemas = a.schema.into();
    let bars = crate::progress::Bars::new(a.quiet);
    let (identity, dir) = if let Some(dir) = &a.dir {
        let identity = match (&a.identity, &a.id) {
            (Some(i), None) => i.clone(),
            (None, Some(s)) => s.parse()?,
            (Some(i), Some(s)) if s.parse::<Identity>()? == *i => i.clone(),
            (Some(_), Some(_)) => bail!("the positional identity and --identity differ"),
            (None, None) => bail!("--dir needs the identity: ORG/NAME@REV or --identity"),
        };
        (identity, dir.as_std_path().to_owned())
    } else {
        // From the Hub: nothing is written, not even to the cache (no
        // blob, ref, lock file or snapshot link).
        let (hub, cache) = hub(a.connections)?;
        let lock = reproduce_lock(&a, &hub, "give ORG/NAME@REV, --lock FILE or --dir DIR")?;
        let identity: Identity = lock.identity.parse()?;
        let got = if !hub.config().offline {
            // Stream every file from the Hub through the layout and the
            // hash tree, so a model larger than the free disk can be
            // reproduced.
            reproduce::reproduce_remote(
                std::sync::Arc::new(hub),
                &lock,
                &identity,
                schemas,
                &expect,
                a.threads,
                &bars,
            )?
        } else {
            // Offline: read the cached blobs in place, verified first.
            reproduce::reproduce_cached(
                &cache, &lock, &identity, schemas, &expect, a.threads, &bars,
            )?
        };
        return verdict(&identity, &got, &expect, schemas, a.json);
    };
    let symlinks = crate::symlinks(a.allow_external_symlinks);
    let got = reproduce::reproduce_dir(
        &dir, symlinks, &identity, schemas, &expect, a.threads, &bars,
    )?;
    verdict(&identity, &got, &expect, schemas, a.json)
}

/// The lock `mpk reproduce` works from: `--lock`, or the positional
/// `ORG/NAME@REV` locked now without writing anything (`missing`: the
/// error when neither is given).
fn reproduce_lock(a: &ReproduceArgs, hub: &Hub, missing: &str) -> Result<Lock> {
    let repo_arg = match (&a.id, &a.lock) {
        (Some(s), _) => s.clone(),
        (None, Some(p)) => Lock::load(p.as_std_path())?.repo().to_owned(),
        (None, None) => bail!("{missing}"),
    };
    build::resolve_lock(
        hub,
        None,
        &repo_arg,
        a.lock.as_deref(),
        Vec::new(),
        &mut printer(a.quiet),
    )
}

/// `mpk reproduce --lock FILE -o OUTDIR`: the documents `mpk build`
/// writes, from the Hub (or offline, the cache), without an image.
fn run_reproduce_publish(a: ReproduceArgs) -> Result<()> {
    let output = a.output.clone().expect("checked by the caller");
    let schema = match a.schema.into() {
        reproduce::Schemas::One(s) => s,
        reproduce::Schemas::Auto => bail!(
            "--output publishes documents of one schema: give --schema modelwrap-v1 or modelwrap-v2 (auto only compares with --expect)"
        ),
    };
    let expect = a
        .expect
        .as_deref()
        .map(crate::reference::load)
        .transpose()?;
    let (hub, cache) = hub(a.connections)?;
    let lock = reproduce_lock(&a, &hub, "give ORG/NAME@REV or --lock FILE")?;
    let identity: Identity = lock.identity.parse()?;
    let bars = crate::progress::Bars::new(a.quiet);
    let files = if hub.config().offline {
        reproduce::LockFiles::Cache(&cache)
    } else {
        reproduce::LockFiles::Hub(std::sync::Arc::new(hub))
    };
    let (reference, report) =
        reproduce::reproduce_lock_report(files, &lock, &identity, schema, a.threads, &bars)?;
    if let Some(expect) = &expect {
        // A difference is a finding, and nothing is published.
        let got = reproduce::Reproduced { reference, schema };
        verdict(
            &identity,
            &got,
            expect,
            reproduce::Schemas::One(schema),
            a.json,
        )?;
    }
    let built = build::publish_reproduced(
        &lock,
        &reference,
        schema,
        report,
        &build::DocumentOptions {
            output,
            force: a.force,
            bases: a.bases,
        },
    )?;
    if expect.is_none() {
        if a.json {
            out!("{}", built.manifest_json);
        } else {
            outln!("{}", built.manifest.reference);
        }
    }
    Ok(())
}

/// Prints the computed reference (or, with `json`, `{identity, computed,
/// expected, match, schema}`) and fails (a finding) unless it equals the
/// expected one ([`reproduce::Comparison`]). With `--schema auto` the
/// schema used is also named on standard error.
fn verdict(
    identity: &Identity,
    got: &reproduce::Reproduced,
    expect: &Reference,
    schemas: reproduce::Schemas,
    json: bool,
) -> Result<()> {
    let c = reproduce::Comparison::new(identity, got.reference, *expect);
    if json {
        let v = serde_json::json!({
            "identity": identity.to_string(),
            "computed": c.computed.to_string(),
            "expected": c.expected.to_string(),
            "match": c.matches(),
            "schema": got.schema.name(),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        outln!("{}", c.computed);
    }
    if schemas == reproduce::Schemas::Auto {
        if c.matches() {
            eprintln!("schema: {} matched", got.schema);
        } else {
            eprintln!(
                "schema: none matched; the computed reference shown is {}'s",
                got.schema
            );
        }
    }
    c.check()
}

/// Publishes a small document (lock, manifest, deployment), replacing
/// the previous one (refreshing is these commands' purpose).
fn write_atomic(path: &Utf8Path, bytes: &[u8]) -> Result<()> {
    mpk_pack::output::write_file(path, bytes, true)
}
