//! Keystone policy and token rules: who may validate or revoke a token,
//! rescoping keeps the parent's expiry, unknown users cost a hash, old
//! password hashes are upgraded, unknown domains and bare-string scopes
//! are refused.

mod common;

use std::time::{Duration, Instant};

use common::{start, Env, PASSWORD};
use serde_json::{json, Value};

async fn token_call(env: &Env, method: &str, caller: &str, subject: &str) -> (u16, Value) {
    let r = env
        .http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}/identity/v3/auth/tokens", env.url),
        )
        .header("X-Auth-Token", caller)
        .header("X-Subject-Token", subject)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_policy_follows_keystone() {
    let env = start().await;
    let member = env.login("member", PASSWORD, "demo").await;
    let reader = env.login("reader", PASSWORD, "demo").await;

    // A user validates and checks their own token.
    let (s, v) = token_call(&env, "GET", &member, &member).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token"]["user"]["name"], "member");
    assert_eq!(token_call(&env, "HEAD", &member, &member).await.0, 200);

    // Another user's token: 403 with Keystone's ForbiddenAction text.
    let (s, v) = token_call(&env, "GET", &member, &reader).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(
        v["error"]["message"],
        "You are not authorized to perform the requested action: identity:validate_token."
    );
    assert_eq!(token_call(&env, "HEAD", &member, &reader).await.0, 403);
    let (s, v) = token_call(&env, "DELETE", &member, &reader).await;
    assert_eq!(s, 403);
    assert_eq!(
        v["error"]["message"],
        "You are not authorized to perform the requested action: identity:revoke_token."
    );
    // ... and the reader's token still works.
    assert_eq!(token_call(&env, "GET", &reader, &reader).await.0, 200);

    // An admin may validate and revoke anyone's token.
    let (s, v) = token_call(&env, "GET", &env.admin, &reader).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token"]["user"]["name"], "reader");
    assert_eq!(token_call(&env, "DELETE", &env.admin, &reader).await.0, 204);
    assert_eq!(token_call(&env, "GET", &member, &member).await.0, 200);
    assert_eq!(token_call(&env, "GET", &env.admin, &reader).await.0, 404);

    // A user revokes their own token.
    assert_eq!(token_call(&env, "DELETE", &member, &member).await.0, 204);
    let (s, _, _) = env
        .password_auth(
            json!({"auth": {"identity": {"methods": ["token"], "token": {"id": member}}}}),
        )
        .await;
    assert_eq!(s, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescoped_tokens_keep_the_parent_expiry() {
    let env = start().await;
    let (s, parent, tok) = env
        .password_auth(
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "member", "domain": {"id": "default"}, "password": PASSWORD}}}}}),
        )
        .await;
    assert_eq!(s, 201, "{parent}");
    let tok = tok.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, child, child_tok) = env
        .password_auth(
            json!({"auth": {"identity": {"methods": ["token"], "token": {"id": tok}},
            "scope": {"project": {"name": "demo", "domain": {"name": "Default"}}}}}),
        )
        .await;
    assert_eq!(s, 201, "{child}");
    assert_eq!(child["token"]["expires_at"], parent["token"]["expires_at"]);
    assert_ne!(child["token"]["issued_at"], parent["token"]["issued_at"]);
    // Rescoping the rescoped token still cannot extend it.
    let (s, grandchild, _) = env
        .password_auth(json!({"auth": {"identity": {"methods": ["token"], "token": {"id": child_tok.unwrap()}}}}))
        .await;
    assert_eq!(s, 201);
    assert_eq!(
        grandchild["token"]["expires_at"],
        parent["token"]["expires_at"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_cost_as_much_as_wrong_passwords() {
    let env = start().await;
    let attempt = |user: &'static str| {
        let env = &env;
        async move {
            let t = Instant::now();
            let (s, v, _) = env
                .password_auth(
                    json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
                    "name": user, "domain": {"name": "Default"}, "password": "wrong-password"}}}}}),
                )
                .await;
            assert_eq!(s, 401, "{v}");
            assert_eq!(
                v["error"]["message"],
                "The request you have made requires authentication."
            );
            t.elapsed()
        }
    };
    // Warm up (the dummy hash is made on first use).
    attempt("nobody").await;
    let mut wrong = vec![];
    let mut unknown = vec![];
    for _ in 0..3 {
        wrong.push(attempt("member").await);
        unknown.push(attempt("nobody").await);
    }
    wrong.sort();
    unknown.sort();
    let (w, u) = (wrong[1].as_secs_f64(), unknown[1].as_secs_f64());
    assert!(
        u > 0.5 * w,
        "unknown user answered in {u:.3}s, wrong password in {w:.3}s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_password_hashes_are_upgraded_on_login() {
    let env = start().await;
    let mut u = env.engine.user("member").await.unwrap();
    let salt = [3u8; 16];
    let out = lifeboat_passwords::pbkdf2_sha256(PASSWORD.as_bytes(), &salt, 60_000);
    u.password_hash = format!(
        "pbkdf2-sha256$60000${}${}",
        hex::encode(salt),
        hex::encode(out)
    );
    env.engine.store().put(&u).await.unwrap();
    env.login("member", PASSWORD, "demo").await;
    let after = env.engine.user("member").await.unwrap().password_hash;
    assert_eq!(
        lifeboat_engine::hash_rounds(&after),
        Some(lifeboat_engine::PBKDF2_ROUNDS)
    );
    assert!(lifeboat_engine::verify_password(PASSWORD, &after));
    env.login("member", PASSWORD, "demo").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_domains_and_bare_string_scopes_are_refused() {
    let env = start().await;
    let user = |domain: Value| {
        json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "member", "domain": domain, "password": PASSWORD}}}}})
    };
    let (s, v, tok) = env.password_auth(user(json!({"name": "Nope"}))).await;
    assert_eq!((s, tok), (401, None), "{v}");
    assert_eq!(
        v["error"]["message"],
        "The request you have made requires authentication."
    );
    let (s, _, _) = env.password_auth(user(json!({"id": "nope"}))).await;
    assert_eq!(s, 401);
    let (s, v, _) = env
        .password_auth(
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "member", "password": PASSWORD}}}}}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Expecting to find domain in user."));
    // A project in a domain that does not exist.
    let mut b = user(json!({"name": "Default"}));
    b["auth"]["scope"] = json!({"project": {"name": "demo", "domain": {"name": "Nope"}}});
    assert_eq!(env.password_auth(b).await.0, 401);

    for scope in [json!("demo"), json!("admin"), json!({})] {
        let mut b = user(json!({"name": "Default"}));
        b["auth"]["scope"] = scope.clone();
        let (s, v, tok) = env.password_auth(b).await;
        assert_eq!((s, tok), (400, None), "scope {scope}: {v}");
        assert_eq!(
            v["error"]["message"],
            "Expecting to find project, domain, system or unscoped in scope. The server could not comply with the request since it is either malformed or otherwise incorrect. The client is assumed to be in error."
        );
    }
    let mut b = user(json!({"name": "Default"}));
    b["auth"]["scope"] = json!(["project"]);
    assert_eq!(env.password_auth(b).await.0, 400);
    // Explicitly unscoped still works (keystoneauth sends it).
    let mut b = user(json!({"id": "default"}));
    b["auth"]["scope"] = json!("unscoped");
    assert_eq!(env.password_auth(b).await.0, 201);
}
