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

/// The encrypted-model constants and rules of the shared parser are those
/// `mpk encrypt` (mpk-crypt, mpk-cli) writes by.
#[test]
fn encrypted_words_agree_with_mpk_crypt() {
    use mpk_guest::cmdline::{
        CRYPT_PAYLOAD_SECTOR, CRYPT_SECTOR_SIZE, identity_uuid, partition_uuid,
    };
    for id in [ID, "a/b@0000000000000000000000000000000000000000"] {
        assert_eq!(partition_uuid(id), mpk_crypt::partition_guid(id));
        assert_ne!(partition_uuid(id), identity_uuid(id));
    }
    assert_eq!(CRYPT_PAYLOAD_SECTOR, mpk_crypt::layout::PARTITION_START);
    assert_eq!(CRYPT_SECTOR_SIZE, mpk_crypt::CRYPT_SECTOR as u64);
    let root = "17c6605f3becf63a63da37cc6958b2d18f8abc750f9f546b9f57133db40c4326";
    for h in [4096u64, 2142208, 128 * 4096, 129 * 4096, 1 << 30] {
        let word = format!("mpk.model={ID}:{root}_{h}_{}:crypt", partition_uuid(ID));
        let m = parse(&word).unwrap().models.remove(0);
        let len = mpk_cli::pack::mpk_len(h / 4096).unwrap();
        assert_eq!(m.mpk_len(), len, "{h}");
        let layout = mpk_crypt::Layout::new(len, uuid::Uuid::nil(), partition_uuid(ID)).unwrap();
        assert_eq!(m.crypt_sectors() * 512, layout.payload_len);
        assert_eq!(m.crypt_disk_min(), layout.payload_offset() + len);
        assert!(m.crypt_disk_min() <= layout.image_len());
    }
}
