//! Redirects are followed by hand, one hop at a time: the token goes only
//! to hops on the endpoint's origin, a chain is capped, and a `Location`
//! with userinfo is refused (issue 13). Two mock Hubs on two ports are the
//! two origins; each records the requests that carried `Authorization`.

use mpk_hub::client::{Attempt, Limits};
use mpk_hub::mock::MockHub;
use mpk_hub::names::{Commit, RepoId, RepoPath};
use mpk_hub::{Hub, HubConfig};
use std::time::Duration;

const C1: &str = "1111111111111111111111111111111111111111";

fn client(hub: &MockHub, max_redirects: u32) -> Hub {
    Hub::new(HubConfig {
        endpoint: hub.endpoint.clone(),
        token: Some(hub.token.clone()),
        offline: false,
        attempts: 1,
        backoff: Duration::ZERO,
        limits: Limits {
            max_redirects,
            ..Limits::default()
        },
        connections: 1,
        proxy: None,
    })
    .unwrap()
}

fn files() -> Vec<(&'static str, Vec<u8>, bool)> {
    vec![("w.bin", vec![7u8; 1000], true)]
}

fn resolve(h: &Hub) -> String {
    h.resolve_url(
        &RepoId::parse("o/n").unwrap(),
        &Commit::parse(C1).unwrap(),
        &RepoPath::parse("w.bin").unwrap(),
    )
}

fn get(h: &Hub, url: &str) -> Result<Vec<u8>, String> {
    match h.request("GET", url, None, "w.bin") {
        Ok(mut r) => Ok(r.body_mut().read_to_vec().unwrap()),
        Err(Attempt::Retry(e) | Attempt::Fatal(e)) => Err(e.to_string()),
    }
}

#[test]
fn a_get_redirected_to_another_origin_drops_the_token() {
    let (hub, cdn) = (MockHub::start(), MockHub::start());
    hub.put("o/n", "main", C1, files());
    cdn.put("o/n", "main", C1, files());
    hub.gate("o/n");
    hub.hostile(|x| x.lfs_location = Some(cdn.endpoint.clone()));
    let h = client(&hub, 10);
    assert_eq!(get(&h, &resolve(&h)).unwrap(), vec![7u8; 1000]);
    assert_eq!(hub.authed().len(), 1, "{:?}", hub.authed());
    assert!(cdn.log().iter().any(|l| l.starts_with("GET /lfs-cdn/")));
    assert_eq!(cdn.authed(), Vec::<String>::new());
    // A chain that comes back to the Hub's origin gets the token there
    // again, and only there.
    cdn.hostile(|x| x.cdn_redirect = Some(hub.endpoint.clone()));
    assert_eq!(get(&h, &resolve(&h)).unwrap(), vec![7u8; 1000]);
    assert_eq!(cdn.authed(), Vec::<String>::new());
    assert!(hub.authed().iter().any(|l| l.starts_with("GET /lfs-cdn/")));
}

#[test]
fn a_redirect_loop_is_capped() {
    let hub = MockHub::start();
    hub.put("o/n", "main", C1, files());
    hub.hostile(|x| x.cdn_redirect = Some(hub.endpoint.clone()));
    let h = client(&hub, 4);
    let e = get(&h, &resolve(&h)).unwrap_err();
    assert!(e.contains("more than 4 redirects"), "{e}");
    assert!(e.contains("MPK_HUB_MAX_REDIRECTS"), "{e}");
    // The resolve hop, then four more; the fifth redirect is refused.
    assert_eq!(hub.log().len(), 5, "{:?}", hub.log());
}

#[test]
fn a_location_with_userinfo_is_refused() {
    let (hub, cdn) = (MockHub::start(), MockHub::start());
    hub.put("o/n", "main", C1, files());
    cdn.put("o/n", "main", C1, files());
    let disguise = format!(
        "http://{}@{}",
        hub.endpoint.trim_start_matches("http://"),
        cdn.endpoint.trim_start_matches("http://")
    );
    hub.hostile(|x| x.lfs_location = Some(disguise));
    let h = client(&hub, 10);
    let url = resolve(&h);
    let e = get(&h, &url).unwrap_err();
    assert!(e.contains("userinfo"), "{e}");
    assert!(!e.contains(&hub.token), "{e}");
    let repo = RepoId::parse("o/n").unwrap();
    let commit = Commit::parse(C1).unwrap();
    let e = h
        .file_meta(&repo, &commit, &RepoPath::parse("w.bin").unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("userinfo"), "{e}");
    assert!(cdn.log().is_empty(), "{:?}", cdn.log());
}

/// The mock Hub reached under another name for the same address.
fn client_at(hub: &MockHub, endpoint: String) -> Hub {
    Hub::new(HubConfig {
        endpoint,
        ..client(hub, 5).config().clone()
    })
    .unwrap()
}

#[test]
fn the_token_never_goes_in_clear_text_across_a_network() {
    // A gated repo. `http://0.0.0.0:PORT` reaches the mock on this machine,
    // but it is not a loopback address: for mpk it stands for any plain
    // http host elsewhere, where the token would cross the network
    // readable. It is held back, and the refusal says why.
    let hub = MockHub::start();
    hub.put("o/n", "main", C1, files());
    hub.gate("o/n");
    let port = hub.endpoint.rsplit(':').next().unwrap();
    let far = client_at(&hub, format!("http://0.0.0.0:{port}"));
    let e = far
        .revision(
            &RepoId::parse("o/n").unwrap(),
            &mpk_hub::names::Revision::parse("main").unwrap(),
        )
        .unwrap_err();
    assert!(matches!(e, mpk_hub::Error::TokenWithheld { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("HF_TOKEN was not sent"), "{msg}");
    assert!(msg.contains("https"), "{msg}");
    assert!(!msg.contains(&hub.token), "{msg}");
    assert_eq!(
        hub.authed(),
        Vec::<String>::new(),
        "no request carried the token"
    );

    // The same server as `localhost`: this machine, so the token goes.
    let near = client_at(&hub, format!("http://localhost:{port}"));
    let got = near
        .revision(
            &RepoId::parse("o/n").unwrap(),
            &mpk_hub::names::Revision::parse("main").unwrap(),
        )
        .unwrap();
    assert_eq!(got.to_string(), C1);
    assert!(!hub.authed().is_empty());
}
