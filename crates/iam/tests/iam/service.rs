//! iam replicas over a real flaredb node on 127.0.0.1: bootstrap, login and throttling, tenant
//! isolation, token tampering, API keys, refresh tokens, logout and revocation, custom roles,
//! pagination and deletes, and that no secret ever reaches the logs.

use crate::support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use reqwest::Method as M;
use serde_json::json;
use support::{World, ids, project_scope, tenant_scope};

/// Every log line of this test binary, at debug level, for the secrets check.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let make_writer = move || Capture(sink.clone());
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(make_writer)
            .with_ansi(false)
            .init();
        logs
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_not_logged(secrets: &[&str]) {
    let logs = String::from_utf8_lossy(&captured().lock().unwrap()).into_owned();
    assert!(logs.len() > 1000, "the capture works ({} bytes)", logs.len());
    for s in secrets {
        // Tokens are long; their signature part is what must never appear.
        let needle = s.rsplit('.').next().unwrap();
        assert!(!logs.contains(needle), "a secret appeared in the logs: {}…", &needle[..8.min(needle.len())]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated_and_tokens_are_checked() {
    captured();
    let w = World::start().await;
    use std::os::unix::fs::PermissionsExt;
    for f in ["admin-password", "platform-api-key", "s3-gateway-api-key"] {
        let mode = std::fs::metadata(w.dir.path().join("iam").join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    assert!(w.iam.bootstrap(&w.dir.path().join("iam")).await.unwrap().is_empty(), "bootstrap happens once");

    let api = &w.api;
    for t in ["acme", "globex"] {
        w.tenant(t).await;
    }
    let (s, _) = api.post("/v1/tenants", &w.admin, json!({"id": "acme", "display_name": "x"})).await;
    assert_eq!(s, 409);
    let (s, v) = api.post("/v1/tenants", &w.admin, json!({"id": "Bad Name"})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("Bad Name"), "{v}");
    let alice = w.user("alice", "acme", "tenant-admin", tenant_scope("acme")).await;
    let bob = w.user("bob", "globex", "tenant-admin", tenant_scope("globex")).await;

    // Lists never show other tenants; reads, writes and deletes across tenants are refused.
    let (s, v) = api.get("/v1/tenants", &alice).await;
    assert_eq!((s, ids(&v, "id")), (200, vec!["acme".to_owned()]));
    assert_eq!(api.get("/v1/tenants/globex", &alice).await.0, 403);
    assert_eq!(api.get("/v1/tenants/nonexistent", &alice).await.0, 403, "a denied caller cannot probe");
    let (s, v) = api.post("/v1/tenants/acme/projects", &alice, json!({"id": "web"})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(api.post("/v1/tenants/acme/projects", &bob, json!({"id": "evil"})).await.0, 403);
    let (s, v) = api.get("/v1/tenants/acme/projects", &bob).await;
    assert_eq!((s, v["items"].as_array().unwrap().len()), (200, 0), "{v}");
    assert_eq!(api.get("/v1/tenants/acme/projects/web", &bob).await.0, 403);
    assert_eq!(api.delete("/v1/tenants/acme/projects/web", &bob).await, 403);
    assert_eq!(api.delete("/v1/users/alice", &bob).await, 403);
    assert_eq!(api.delete("/v1/tenants/acme", &bob).await, 403);
    let (s, v) = api.get("/v1/users", &bob).await;
    assert_eq!((s, ids(&v, "id")), (200, vec!["bob".to_owned()]), "no acme users in globex's list");
    assert_eq!(api.post("/v1/tenants", &alice, json!({"id": "mine"})).await.0, 403, "tenant admins stay inside");
    let b = json!({"subject": "user:alice", "role": "tenant-admin", "scope": tenant_scope("globex")});
    assert_eq!(api.post("/v1/bindings", &alice, b).await.0, 403, "no granting yourself another tenant");
    let b = json!({"subject": "user:alice", "role": "viewer", "scope": tenant_scope("globex")});
    let (s, v) = api.post("/v1/bindings", &bob, b).await;
    assert_eq!(s, 404, "bob cannot pull a foreign user into globex, nor learn it exists: {v}");
    let ask = json!({"subject": "user:bob", "action": "compute.vm.create", "scope": project_scope("acme", "web")});
    assert_eq!(api.post("/v1/authorize", &alice, ask.clone()).await.0, 403, "only platform services ask for others");
    let (s, v) = api.post("/v1/authorize", &w.admin, ask).await;
    assert_eq!((s, v["allowed"].as_bool()), (200, Some(false)), "{v}");
    let ask = json!({"subject": "user:alice", "action": "compute.vm.create", "scope": project_scope("acme", "web")});
    let (s, v) = api.post("/v1/authorize", &alice, ask).await;
    assert_eq!((s, v["allowed"].as_bool()), (200, Some(true)), "{v}");

    // Tokens: missing, tampered, alg none, HS256 keyed with the public key.
    assert_eq!(api.call(M::GET, "/v1/tenants", None, None).await.0, 401);
    let mut parts: Vec<String> = alice.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].chars().rev().collect();
    assert_eq!(api.get("/v1/tenants", &parts.join(".")).await.0, 401);
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = b64.encode(r#"{"alg":"none"}"#);
    let (s, v) = api.get("/v1/tenants", &format!("{none}.{}.", alice.split('.').nth(1).unwrap())).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "unauthenticated", "{v}");

    // Another replica over the same flaredb accepts the first one's tokens.
    let (_iam2, api2) = support::replica(w.db).await;
    let (s, v) = api2.get("/v1/tenants", &alice).await;
    assert_eq!((s, v["items"].as_array().map(Vec::len)), (200, Some(1)), "{v}");

    // Deletes refuse to lose things: a tenant with projects or users stays.
    let (s, v) = api.call(M::DELETE, "/v1/tenants/acme", Some(&w.admin), None).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(api.delete("/v1/tenants/acme/projects/web", &alice).await, 204);
    assert_eq!(api.delete("/v1/users/alice", &w.admin).await, 204);
    assert_eq!(api.get("/v1/tenants", &alice).await.0, 401, "a deleted user's token is revoked at once");
    assert_eq!(api.delete("/v1/tenants/acme", &w.admin).await, 204);
    assert_eq!(api.get("/v1/tenants/acme", &w.admin).await.0, 404);

    // Brute force: five free failures, then the user (and the source) are throttled.
    for _ in 0..6 {
        assert_eq!(api.login("bob", "wrong password!").await.0, 401);
    }
    let (s, v) = api.login("bob", "a long password").await;
    assert_eq!(s, 429, "even the right password waits: {v}");
    assert_eq!(api.login("nobody", "whatever it is").await.0, 429, "the guessing source is throttled too");
    // The throttle is by user and source: a guesser elsewhere cannot lock bob out.
    let (s, v) = api.from("127.0.0.2").login("bob", "a long password").await;
    assert_eq!(s, 200, "bob, from another address, is not locked out by a guesser: {v}");
}

/// A wrong secret for a live refresh token is refused and leaves the token to its holder (on a
/// fresh server: the other tests' failures would have this source throttled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_refresh_token_leaves_the_session_to_its_holder() {
    let w = World::start().await;
    let api = &w.api;
    let (s, v) = api.login("admin", &w.admin_password).await;
    assert_eq!(s, 200, "{v}");
    let refresh = v["refresh_token"].as_str().unwrap().to_owned();
    let last = if refresh.ends_with('x') { 'y' } else { 'x' };
    let forged = format!("{}{last}", &refresh[..refresh.len() - 1]);
    assert_eq!(api.grant(json!({"grant_type": "refresh_token", "refresh_token": forged})).await.0, 401);
    let (s, v) = api.grant(json!({"grant_type": "refresh_token", "refresh_token": refresh})).await;
    assert_eq!(s, 200, "the holder's refresh token survived the forgery: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_live_and_die_as_documented() {
    captured();
    let w = World::start().await;
    let api = &w.api;
    w.tenant("acme").await;
    let alice = w.user("alice", "acme", "tenant-admin", tenant_scope("acme")).await;
    let mut secrets = vec![w.admin.clone(), w.admin_password.clone(), w.platform_key.clone(), alice.clone()];

    // A service account with an API key: shown once, listed without the secret, exchanged
    // for tokens; its tokens die with the key.
    let (s, v) = api.post("/v1/service-accounts", &alice, json!({"id": "ci", "tenant": "acme"})).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api.post("/v1/service-accounts", &alice, json!({"id": "other", "tenant": "globex"})).await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = api.post("/v1/api-keys", &alice, json!({"owner": "sa:ci", "description": "pipeline"})).await;
    assert_eq!(s, 201, "{v}");
    let key = v["api_key"].as_str().unwrap().to_owned();
    let key_id = v["id"].as_str().unwrap().to_owned();
    secrets.push(key.clone());
    let (s, v) = api.get("/v1/api-keys?owner=sa:ci", &alice).await;
    assert_eq!((s, ids(&v, "id")), (200, vec![key_id.clone()]));
    assert!(!v.to_string().contains(key.rsplit('_').next().unwrap()), "lists never show the key");
    let (s, v) = api.grant(json!({"grant_type": "api_key", "api_key": key})).await;
    assert_eq!(s, 200, "{v}");
    let sa_token = v["access_token"].as_str().unwrap().to_owned();
    secrets.push(sa_token.clone());
    secrets.push(v["refresh_token"].as_str().unwrap().to_owned());
    let (s, v) = api.get("/v1/auth/whoami", &sa_token).await;
    assert_eq!((s, v["claims"]["sub"].as_str()), (200, Some("sa:ci")), "{v}");
    let (s, v) = api.get("/v1/tenants", &sa_token).await;
    assert_eq!((s, v["items"].as_array().unwrap().len()), (200, 0), "no bindings, nothing visible");
    // Change the last character to one it is not (a fixed replacement would sometimes be a no-op).
    let last = if key.ends_with('x') { 'y' } else { 'x' };
    let tampered = format!("{}{last}", &key[..key.len() - 1]);
    assert_eq!(api.grant(json!({"grant_type": "api_key", "api_key": tampered})).await.0, 401);
    assert_eq!(api.grant(json!({"grant_type": "api_key", "api_key": "garbage"})).await.0, 401);
    let (s, v) = api.grant(json!({"grant_type": "api_key", "api_key": key, "scope_tenant": "acme"})).await;
    assert!(s == 400 || s == 422, "an unknown field is refused, not ignored: {s} {v}");
    assert!(v.to_string().contains("scope_tenant"), "{v}");
    assert_eq!(api.delete(&format!("/v1/api-keys/{key_id}"), &alice).await, 204);
    assert_eq!(api.get("/v1/auth/whoami", &sa_token).await.0, 401, "tokens of a deleted key are revoked");
    assert_eq!(api.grant(json!({"grant_type": "api_key", "api_key": key})).await.0, 401);

    // Refresh tokens: one use each.
    let (s, v) = api.login("alice", "a long password").await;
    assert_eq!(s, 200);
    let (access, refresh) = (v["access_token"].as_str().unwrap(), v["refresh_token"].as_str().unwrap().to_owned());
    secrets.extend([access.to_owned(), refresh.clone()]);
    let (s, v) = api.grant(json!({"grant_type": "refresh_token", "refresh_token": refresh})).await;
    assert_eq!(s, 200, "{v}");
    let (access2, refresh2) = (v["access_token"].as_str().unwrap().to_owned(), v["refresh_token"].as_str().unwrap());
    secrets.extend([access2.clone(), refresh2.to_owned()]);
    let (s, v) = api.grant(json!({"grant_type": "refresh_token", "refresh_token": refresh})).await;
    assert_eq!(s, 401, "a used refresh token is dead: {v}");

    // Logout revokes the access token and its refresh token.
    let (s, _) = api.post("/v1/auth/logout", &access2, json!({"refresh_token": refresh2})).await;
    assert_eq!(s, 204);
    assert_eq!(api.get("/v1/auth/whoami", &access2).await.0, 401);
    assert_eq!(api.grant(json!({"grant_type": "refresh_token", "refresh_token": refresh2})).await.0, 401);
    assert_eq!(api.get("/v1/auth/whoami", &alice).await.0, 200, "other sessions live on");

    // Disabling a user revokes its tokens and stops logins; enabling lets it back.
    let (s, v) = api.call(M::PATCH, "/v1/users/alice", Some(&alice), Some(json!({"disabled": true}))).await;
    assert_eq!(s, 400, "users do not disable themselves: {v}");
    let (s, v) = api.call(M::PATCH, "/v1/users/alice", Some(&w.admin), Some(json!({"disabled": true}))).await;
    assert_eq!((s, v["disabled"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(api.get("/v1/auth/whoami", &alice).await.0, 401);
    assert_eq!(api.login("alice", "a long password").await.0, 401);
    let (s, _) = api.call(M::PATCH, "/v1/users/alice", Some(&w.admin), Some(json!({"disabled": false}))).await;
    assert_eq!(s, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // a new second for iat
    let alice = api.token("alice", "a long password").await;
    secrets.push(alice.clone());

    // A password change ends the user's sessions, refresh tokens included.
    let (s, v) = api.login("alice", "a long password").await;
    assert_eq!(s, 200);
    let refresh = v["refresh_token"].as_str().unwrap().to_owned();
    secrets.push(refresh.clone());
    for pw in ["a longer password", "a long password"] {
        let patch = json!({"password": pw});
        assert_eq!(api.call(M::PATCH, "/v1/users/alice", Some(&w.admin), Some(patch)).await.0, 200);
    }
    // (From another address: this source's failures so far would have it throttled.)
    let (s, v) = api.from("127.0.0.3").grant(json!({"grant_type": "refresh_token", "refresh_token": refresh})).await;
    assert_eq!(s, 401, "a refresh token does not outlive a password change: {v}");
    assert_eq!(api.get("/v1/auth/whoami", &alice).await.0, 401);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // a new second for iat
    let alice = api.token("alice", "a long password").await;
    secrets.push(alice.clone());

    // Custom roles: tenant-owned, validated, confined to the tenant, updated live.
    let role = json!({"name": "vm-operator", "tenant": "acme", "permissions": ["compute.vm.start", "compute.vm.stop"]});
    let (s, v) = api.post("/v1/roles", &alice, role).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api.post("/v1/roles", &alice, json!({"name": "global", "permissions": ["compute.*"]})).await;
    assert_eq!(s, 403, "platform-wide roles are for system admins: {v}");
    let (s, v) = api.post("/v1/roles", &alice, json!({"name": "x", "tenant": "acme", "permissions": ["vm.fly"]})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("vm.fly"), "{v}");
    let (s, _) = api.post("/v1/roles", &alice, json!({"name": "viewer", "tenant": "acme", "permissions": ["*"]})).await;
    assert_eq!(s, 400, "built-in names are reserved");
    let (s, v) =
        api.post("/v1/users", &alice, json!({"name": "carol", "tenant": "acme", "password": "another long one"})).await;
    assert_eq!(s, 201, "{v}");
    let b = json!({"subject": "user:carol", "role": "vm-operator", "scope": project_scope("acme", "web")});
    let (s, v) = api.post("/v1/bindings", &alice, b).await;
    assert_eq!(s, 201, "{v}");
    let binding_id = v["id"].as_str().unwrap().to_owned();
    let carol = api.token("carol", "another long one").await;
    secrets.push(carol.clone());
    let can = |action: &str, p: &str| {
        let body = json!({"subject": "user:carol", "action": action, "scope": project_scope("acme", p)});
        let (api, carol) = (api.clone(), carol.clone());
        async move { api.post("/v1/authorize", &carol, body).await.1["allowed"].as_bool().unwrap() }
    };
    assert!(can("compute.vm.stop", "web").await);
    assert!(!can("compute.vm.delete", "web").await);
    assert!(!can("compute.vm.stop", "db").await, "bound to one project");
    let update = json!({"name": "vm-operator", "tenant": "acme", "permissions": ["compute.vm.*"]});
    let (s, v) = api.call(M::PUT, "/v1/roles/vm-operator", Some(&alice), Some(update)).await;
    assert_eq!(s, 200, "{v}");
    assert!(can("compute.vm.delete", "web").await, "role changes apply at once");
    assert_eq!(api.delete("/v1/roles/vm-operator", &alice).await, 409, "still bound");
    assert_eq!(api.delete(&format!("/v1/bindings/user:carol/{binding_id}"), &alice).await, 204);
    assert!(!can("compute.vm.stop", "web").await, "unbound");
    assert_eq!(api.delete("/v1/roles/vm-operator", &alice).await, 204);

    // Pagination: pages chain through every tenant exactly once.
    for i in 0..5 {
        w.tenant(&format!("t{i}")).await;
    }
    let (mut seen, mut token) = (Vec::new(), None::<String>);
    loop {
        let path = match &token {
            Some(t) => format!("/v1/tenants?limit=2&page_token={t}"),
            None => "/v1/tenants?limit=2".to_owned(),
        };
        let (s, v) = api.get(&path, &w.admin).await;
        assert_eq!(s, 200, "{v}");
        assert!(v["items"].as_array().unwrap().len() <= 2);
        seen.extend(ids(&v, "id"));
        match v["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["acme", "t0", "t1", "t2", "t3", "t4"]);
    let (s, v) = api.get("/v1/tenants?limit=0", &w.admin).await;
    assert_eq!(s, 400, "{v}");

    // Bad input gets a clear error naming what was wrong.
    let (s, v) = api.grant(json!({"grant_type": "telepathy"})).await;
    assert_eq!(s, 422, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("telepathy"), "{v}");
    let (s, v) = api.post("/v1/users", &w.admin, json!({"name": "dave", "tenant": "acme", "password": "short"})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("12 characters"), "{v}");

    // Failed logins are logged with the user name only; give the logger a failure to see.
    assert_eq!(api.login("alice", "the wrong but secret one").await.0, 401);
    secrets.push("the wrong but secret one".into());
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_not_logged(&refs);
}
