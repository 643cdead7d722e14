//! The command-line parser (in mpk-measure, shared with the host) accepts
//! and rejects exactly what the CLI's identity and reference parsers do,
//! and derives the same salt and UUID.

use mpk_cli::identity::Identity;
use mpk_cli::reference::Reference;
use mpk_guest::cmdline::parse;

const ID: &str =
    "hf-internal-testing/tiny-random-GPT2Model@d6694b0d8fe17978761c9305dc151780506b192e";

#[test]
fn agrees_with_the_cli_parsers() {
    let root = "17c6605f3becf63a63da37cc6958b2d18f8abc750f9f546b9f57133db40c4326";
    let ids = [
        ID,
        "a/b@0000000000000000000000000000000000000000",
        "a.b/c_d-e@0123456789abcdef0123456789abcdef01234567",
        "a/b@000000000000000000000000000000000000000",
        "a/b@ABCDEF0000000000000000000000000000000000",
        "./b@0000000000000000000000000000000000000000",
        "a b/c@0000000000000000000000000000000000000000",
        "a/b/c@0000000000000000000000000000000000000000",
    ];
    let offs = [
        "4096",
        "2142208",
        "0",
        "4097",
        "08192",
        "",
        "18446744073709547520",
    ];
    for id in ids {
        for off in offs {
            let cli_uuid = id.parse::<Identity>().map(|i| i.uuid());
            let u = cli_uuid
                .as_ref()
                .map(|u| u.hyphenated().to_string())
                .unwrap_or_else(|_| "905785b4-b198-5ed6-b97d-e7c36a0be1df".into());
            let reference = format!("{root}_{off}_{u}");
            let cli_ok = cli_uuid.is_ok() && reference.parse::<Reference>().is_ok();
            let ours = parse(&format!("mpk.model={id}:{reference}"));
            assert_eq!(cli_ok, ours.is_ok(), "{id} {reference}: {ours:?}");
            if let Ok(cfg) = ours {
                let i: Identity = id.parse().unwrap();
                assert_eq!(cfg.models[0].salt(), i.salt());
                assert_eq!(cfg.models[0].uuid, i.uuid());
            }
        }
    }
}
