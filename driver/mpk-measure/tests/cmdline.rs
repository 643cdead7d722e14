//! `mpk.model=` / `mpk.next=` words: round trips and every refusal.
use mpk_measure::cmdline::{CmdlineError, ModelParams, ModelWord};

const REV: &str = "0123456789abcdef0123456789abcdef01234567";
const ROOT: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const UUID: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";

fn word(repo: &str) -> String {
    format!("mpk.model={repo}@{REV}:{ROOT}_1073741824_{UUID}")
}

#[test]
fn round_trip_in_a_full_command_line() {
    let line = format!(
        "console=ttyS0 {} ro {} mpk.next=/usr/bin/serve  quiet",
        word("Qwen/Qwen3-0.6B"),
        word("meta-llama/Llama_3.2-1B")
    );
    let p = ModelParams::parse(&line).unwrap();
    assert_eq!(p.models.len(), 2);
    assert_eq!(p.models[0].org, "Qwen");
    assert_eq!(p.models[1].name, "Llama_3.2-1B");
    assert_eq!(p.models[0].hash_offset, 1 << 30);
    assert_eq!(p.models[0].uuid.to_string(), UUID);
    assert_eq!(p.next.as_deref(), Some("/usr/bin/serve"));
    assert_eq!(
        p.to_words().unwrap(),
        format!(
            "{} {} mpk.next=/usr/bin/serve",
            word("Qwen/Qwen3-0.6B"),
            word("meta-llama/Llama_3.2-1B")
        )
    );
    assert_eq!(
        ModelParams::parse("ro quiet").unwrap(),
        ModelParams::default()
    );
}

#[test]
fn refusals() {
    let dup = format!("{} {}", word("a/b"), word("a/b"));
    assert_eq!(
        ModelParams::parse(&dup),
        Err(CmdlineError::DuplicateModel("a/b".into()))
    );
    let mut p = ModelParams::parse(&word("a/b")).unwrap();
    p.models.push(p.models[0].clone());
    assert_eq!(
        p.to_words(),
        Err(CmdlineError::DuplicateModel("a/b".into()))
    );
    assert_eq!(
        ModelParams::parse("mpk.next=/a mpk.next=/b"),
        Err(CmdlineError::DuplicateNext)
    );
    for next in ["mpk.next=rel/path", "mpk.next=/a/../b", "mpk.next="] {
        assert!(
            matches!(ModelParams::parse(next), Err(CmdlineError::BadNext(_))),
            "{next}"
        );
    }
    assert!(matches!(
        ModelParams::parse("mpk.models=x"),
        Err(CmdlineError::UnknownParam(_))
    ));
    let bad_words = [
        format!("mpk.model=a/b@{REV}"),
        format!("mpk.model=ab@{REV}:{ROOT}_4096_{UUID}"),
        format!("mpk.model=a/b:{ROOT}_4096_{UUID}"),
        format!("mpk.model=a/b@{}:{ROOT}_4096_{UUID}", REV.to_uppercase()),
        format!("mpk.model=a/b@{}:{ROOT}_4096_{UUID}", &REV[1..]),
        format!("mpk.model=a/b@{REV}:{}_4096_{UUID}", ROOT.to_uppercase()),
        format!("mpk.model=a/b@{REV}:{ROOT}_4095_{UUID}"),
        format!("mpk.model=a/b@{REV}:{ROOT}_0_{UUID}"),
        format!("mpk.model=a/b@{REV}:{ROOT}_04096_{UUID}"),
        format!("mpk.model=a/b@{REV}:{ROOT}_4096_{}", UUID.to_uppercase()),
        format!("mpk.model=a/b@{REV}:{ROOT}_4096_{}", UUID.replace('-', "")),
        format!("mpk.model=a/b@{REV}:{ROOT}_4096_{UUID}_x"),
        format!("mpk.model=a/b/c@{REV}:{ROOT}_4096_{UUID}"),
        format!("mpk.model=../b@{REV}:{ROOT}_4096_{UUID}"),
        format!("mpk.model=a/é@{REV}:{ROOT}_4096_{UUID}"),
    ];
    for w in bad_words {
        assert!(
            matches!(ModelWord::parse(&w), Err(CmdlineError::BadModel { .. })),
            "{w}"
        );
        assert!(ModelParams::parse(&w).is_err(), "{w}");
    }
}
