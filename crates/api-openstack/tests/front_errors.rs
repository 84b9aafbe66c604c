//! Every error of the OpenStack front is the vendor's JSON (405, 413, a
//! path that is not UTF-8), server create and actions follow Nova's
//! schemas, and X-OpenStack-Request-Id is the instance action's request id.

mod common;

use common::{start, PASSWORD};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_json_faults() {
    let env = start().await;
    let member = env.login("member", PASSWORD, "demo").await;

    let (s, ct, body) = env
        .raw(&member, "PATCH", "/compute/v2.1/servers", vec![])
        .await;
    assert_eq!(s, 405);
    assert!(ct.starts_with("application/json"), "{ct}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["badMethod"]["code"], 405);
    assert_eq!(
        v["badMethod"]["message"],
        "The method PATCH is not allowed for this resource."
    );

    let (s, ct, body) = env
        .raw(&member, "GET", "/compute/v2.1/servers/%FF%FE", vec![])
        .await;
    assert!(s == 400 || s == 404, "{s} {body}");
    assert!(ct.starts_with("application/json"), "{ct}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v.get("badRequest").is_some() || v.get("itemNotFound").is_some(),
        "{v}"
    );

    let big = format!("{{\"server\": {{\"name\": \"{}\"}}}}", "x".repeat(200_000));
    let (s, ct, body) = env
        .raw(&member, "POST", "/compute/v2.1/servers", big.into_bytes())
        .await;
    assert_eq!(s, 413, "{body}");
    assert!(ct.starts_with("application/json"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["overLimit"]["code"], 413);

    let (s, ct, body) = env
        .raw(
            &member,
            "POST",
            "/compute/v2.1/servers",
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(s, 400);
    assert!(ct.starts_with("application/json"), "{body}");

    // Keystone and Glance errors keep their own shapes.
    let (s, ct, body) = env
        .raw(&member, "PUT", "/identity/v3/auth/tokens", vec![])
        .await;
    assert_eq!(s, 405);
    assert!(ct.starts_with("application/json"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], 405);
    let (s, ct, _) = env.raw(&member, "POST", "/image/v2/images/x", vec![]).await;
    assert_eq!(s, 405);
    assert!(ct.starts_with("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_create_follows_nova_schemas() {
    let env = start().await;
    let member = env.login("member", PASSWORD, "demo").await;
    let create = |extra: Value| {
        let mut s = json!({"name": "v", "flavorRef": "1", "networks": "none"});
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        json!({"server": s})
    };
    let cases = [
        (json!({"accessIPv4": "not-an-ip"}), "2.100", "Invalid input for field/attribute accessIPv4. Value: not-an-ip. 'not-an-ip' is not a 'ipv4'"),
        (json!({"accessIPv6": "1.2.3.4"}), "2.100", "Invalid input for field/attribute accessIPv6. Value: 1.2.3.4. '1.2.3.4' is not a 'ipv6'"),
        (json!({"user_data": "%%%not-base64"}), "2.100", "Invalid input for field/attribute user_data. Value: %%%not-base64. '%%%not-base64' is not a 'base64'"),
        (json!({"hostname": "no spaces allowed"}), "2.100", "Invalid input for field/attribute hostname. Value: no spaces allowed. 'no spaces allowed' does not match '^[a-zA-Z0-9-._]*$'"),
        (json!({"name": "nul\u{0}byte"}), "2.100", "An invalid 'name' value was provided. The name must be: printable characters. Can not start or end with whitespace."),
        (json!({"name": "line\r\nbreak"}), "2.100", "An invalid 'name' value was provided. The name must be: printable characters. Can not start or end with whitespace."),
        (json!({"personality": [{"path": "/etc/x", "contents": "eA=="}]}), "2.100", "Invalid input for field/attribute server. Additional properties are not allowed ('personality' was unexpected)"),
        (json!({"unknown_key": 1}), "2.1", "Invalid input for field/attribute server. Additional properties are not allowed ('unknown_key' was unexpected)"),
    ];
    for (extra, mv, msg) in cases {
        let (s, v) = env
            .call(&member, "POST", "/servers", mv, Some(create(extra.clone())))
            .await;
        assert_eq!(s, 400, "{extra}: {v}");
        assert_eq!(v["badRequest"]["message"], msg, "{extra}");
    }
    let (_, v) = env.call(&member, "GET", "/servers", "2.100", None).await;
    assert_eq!(v["servers"], json!([]), "nothing was created");

    // Valid values still work, and actions refuse unknown keys.
    let (s, v) = env
        .call(
            &member,
            "POST",
            "/servers",
            "2.100",
            Some(create(json!({
            "accessIPv4": "192.0.2.7", "user_data": "aGVsbG8K", "hostname": "web-1"}))),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let id = v["server"]["id"].as_str().unwrap().to_string();
    let server = env.wait(&member, &id, "ACTIVE").await;
    assert_eq!(server["accessIPv4"], "192.0.2.7");
    let (s, v) = env
        .call(
            &member,
            "POST",
            &format!("/servers/{id}/action"),
            "2.100",
            Some(json!({"reboot": {"type": "SOFT", "bogus": true}})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["badRequest"]["message"], "Invalid input for field/attribute reboot. Additional properties are not allowed ('bogus' was unexpected)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_the_instance_action_request_id() {
    let env = start().await;
    let member = env.login("member", PASSWORD, "demo").await;
    let r = env
        .http
        .post(format!("{}/compute/v2.1/servers", env.url))
        .header("X-Auth-Token", &member)
        .header("OpenStack-API-Version", "compute 2.100")
        .json(&json!({"server": {"name": "rid", "flavorRef": "1", "networks": "none"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let rid = r.headers()["x-openstack-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(r.headers()["x-compute-request-id"].to_str().unwrap(), rid);
    let v: Value = r.json().await.unwrap();
    let id = v["server"]["id"].as_str().unwrap().to_string();
    env.wait(&member, &id, "ACTIVE").await;
    let r = env
        .http
        .post(format!("{}/compute/v2.1/servers/{id}/action", env.url))
        .header("X-Auth-Token", &member)
        .json(&json!({"os-stop": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let stop_rid = r.headers()["x-openstack-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    env.wait(&member, &id, "SHUTOFF").await;
    let (_, v) = env
        .call(
            &member,
            "GET",
            &format!("/servers/{id}/os-instance-actions"),
            "2.100",
            None,
        )
        .await;
    let acts = v["instanceActions"].as_array().unwrap();
    let by = |a: &str| acts.iter().find(|x| x["action"] == a).unwrap()["request_id"].clone();
    assert_eq!(by("create"), json!(rid));
    assert_eq!(by("stop"), json!(stop_rid));
}
