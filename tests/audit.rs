//! The admin audit trail: every admin action, and every refused attempt,
//! is logged with the client's address (and never with the token).

use std::time::Duration;

use testkit::client;

const ADMIN: &str = "adm-audit-7c1e";

#[test]
fn admin_actions_and_refusals_are_logged_with_the_client_address() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, ADMIN).unwrap();
    let p = testkit::binary!().daemon(
        "endpoints:\n  - {name: a, kind: http, url: 'http://127.0.0.1:9/'}\n",
        &[&format!("--web.admin-token-file={}", token_file.display())],
        &[],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let post = |bearer: &str| {
        rt.block_on(async {
            client()
                .post(format!("{}/api/v1/breakers/a/force-open", p.base()))
                .bearer_auth(bearer)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    assert_eq!(post("nope-7c1e"), 401);
    assert_eq!(post(ADMIN), 200);
    p.wait_stderr("msg=\"admin action\"", Duration::from_secs(5));
    let done = p.stderr();
    let line = |needle: &str| {
        done.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} line in:\n{done}"))
            .to_string()
    };
    let action = line("msg=\"admin action\"");
    assert!(action.contains("client=127.0.0.1:"), "{action}");
    assert!(action.contains("endpoint=a"), "{action}");
    let refused = line("msg=\"admin request refused\"");
    assert!(refused.contains("client=127.0.0.1:"), "{refused}");
    assert!(
        !done.contains(ADMIN) && !done.contains("nope-7c1e"),
        "a presented token was logged"
    );
}
