//! `mpk.model=` / `mpk.next=` words: round trips through the builder and
//! the parser, and every refusal (the guest init parses with this code).
use mpk_model::Identity;
use mpk_model::cmdline::{CmdlineError, parse};

fn identity_uuid(id: &str) -> uuid::Uuid {
    id.parse::<Identity>().unwrap().uuid()
}

const REV: &str = "0123456789abcdef0123456789abcdef01234567";
const ROOT: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

fn word(repo: &str) -> String {
    let uuid = identity_uuid(&format!("{repo}@{REV}"));
    format!("mpk.model={repo}@{REV}:{ROOT}_1073741824_{uuid}")
}

#[test]
fn round_trip_in_a_full_command_line() {
    let line = format!(
        "console=ttyS0 {} ro {} mpk.next=/usr/bin/serve  quiet",
        word("Qwen/Qwen3-0.6B"),
        word("meta-llama/Llama_3.2-1B")
    );
    let p = parse(&line).unwrap();
    assert_eq!(p.models.len(), 2);
    assert_eq!(p.models[0].identity.org(), "Qwen");
    assert_eq!(p.models[1].identity.name(), "Llama_3.2-1B");
    assert_eq!(p.models[0].reference.hash_offset, 1 << 30);
    assert_eq!(p.next.as_deref(), Some("/usr/bin/serve"));
    assert_eq!(
        p.to_words(),
        format!(
            "{} {} mpk.next=/usr/bin/serve",
            word("Qwen/Qwen3-0.6B"),
            word("meta-llama/Llama_3.2-1B")
        )
    );
    assert_eq!(parse(&p.to_words()).unwrap(), p);
}

#[test]
fn refusals() {
    let dup = format!("{} {}", word("a/b"), word("a/b"));
    assert_eq!(parse(&dup), Err(CmdlineError::DuplicateModel("a/b".into())));
    assert_eq!(parse("ro quiet"), Err(CmdlineError::NoModels));
    let w = word("a/b");
    assert!(matches!(
        parse(&format!("{w} mpk.next=/a mpk.next=/b")),
        Err(CmdlineError::BadNext { .. })
    ));
    for next in ["mpk.next=rel/path", "mpk.next=/a/../b", "mpk.next="] {
        assert!(
            matches!(
                parse(&format!("{w} {next}")),
                Err(CmdlineError::BadNext { .. })
            ),
            "{next}"
        );
    }
    assert!(matches!(
        parse(&format!("{w} mpk.models=x")),
        Err(CmdlineError::Unknown(_))
    ));
    let u = identity_uuid(&format!("a/b@{REV}"));
    let bad_words = [
        format!("mpk.model=a/b@{REV}"),
        format!("mpk.model=ab@{REV}:{ROOT}_4096_{u}"),
        format!("mpk.model=a/b:{ROOT}_4096_{u}"),
        format!("mpk.model=a/b@{}:{ROOT}_4096_{u}", REV.to_uppercase()),
        format!("mpk.model=a/b@{}:{ROOT}_4096_{u}", &REV[1..]),
        format!("mpk.model=a/b@{REV}:{}_4096_{u}", ROOT.to_uppercase()),
        format!("mpk.model=a/b@{REV}:{ROOT}_4095_{u}"),
        format!("mpk.model=a/b@{REV}:{ROOT}_0_{u}"),
        format!("mpk.model=a/b@{REV}:{ROOT}_04096_{u}"),
        format!(
            "mpk.model=a/b@{REV}:{ROOT}_4096_{}",
            u.to_string().to_uppercase()
        ),
        format!("mpk.model=a/b@{REV}:{ROOT}_4096_{}", u.simple()),
        format!("mpk.model=a/b@{REV}:{ROOT}_4096_{u}_x"),
        format!("mpk.model=a/b/c@{REV}:{ROOT}_4096_{u}"),
        format!("mpk.model=../b@{REV}:{ROOT}_4096_{u}"),
        format!("mpk.model=a/é@{REV}:{ROOT}_4096_{u}"),
    ];
    for w in bad_words {
        assert!(
            matches!(parse(&w), Err(CmdlineError::BadModel { .. })),
            "{w}: {:?}",
            parse(&w)
        );
    }
    // A UUID that is not the identity's: refused before any disk is read.
    let other = identity_uuid(&format!("a/c@{REV}"));
    assert!(matches!(
        parse(&format!("mpk.model=a/b@{REV}:{ROOT}_4096_{other}")),
        Err(CmdlineError::UuidMismatch { .. })
    ));
}

/// The dm-crypt table of an encrypted word covers exactly the payload of
/// the `.empk` that `mpk encrypt` (mpk-crypt's layout) writes.
#[test]
fn encrypted_words_fit_the_empk_layout() {
    let id = "hf-internal-testing/tiny-random-GPT2Model@d6694b0d8fe17978761c9305dc151780506b192e";
    let part = id.parse::<Identity>().unwrap().partition_uuid();
    let root = "17c6605f3becf63a63da37cc6958b2d18f8abc750f9f546b9f57133db40c4326";
    for h in [4096u64, 2142208, 128 * 4096, 129 * 4096, 1 << 30] {
        let word = format!("mpk.model={id}:{root}_{h}_{part}:crypt");
        let m = parse(&word).unwrap().models.remove(0);
        let len = mpk_model::mpk_len(h / 4096).unwrap();
        assert_eq!(m.mpk_len(), len, "{h}");
        let layout = mpk_crypt::Layout::new(len, uuid::Uuid::nil(), part).unwrap();
        assert_eq!(m.crypt_sectors() * 512, layout.payload_len);
        assert_eq!(m.crypt_disk_min(), layout.payload_offset() + len);
        assert!(m.crypt_disk_min() <= layout.image_len());
    }
}
