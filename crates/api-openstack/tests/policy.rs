//! Role denials (Nova's and Glance's default policies), private and
//! disabled flavors, Nova's quotas with its 403 texts, and single-use
//! console tokens.

mod common;

use std::time::{Duration, Instant};

use common::{start, PASSWORD};
use serde_json::{json, Value};

const MV: &str = "2.100";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_cannot_delete_images_release_ips_or_read_consoles() {
    let env = start().await;
    let member = env.login("member", PASSWORD, "demo").await;
    let reader = env.login("reader", PASSWORD, "demo").await;
    let id = env.boot(&member, "r1", "1").await;

    // Console output needs a member (os_compute_api:os-console-output).
    let out = json!({"os-getConsoleOutput": {"length": 5}});
    let (s, v) = env
        .call(
            &reader,
            "POST",
            &format!("/servers/{id}/action"),
            MV,
            Some(out.clone()),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert!(v["forbidden"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Policy doesn't allow"));
    let (s, v) = env
        .call(
            &member,
            "POST",
            &format!("/servers/{id}/action"),
            MV,
            Some(out),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // Image v2 DELETE needs a member of the owning project.
    let (s, v) = env
        .call(
            &member,
            "POST",
            &format!("/servers/{id}/action"),
            MV,
            Some(json!({"createImage": {"name": "snap"}})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let image = v["image_id"].as_str().unwrap().to_string();
    for _ in 0..200 {
        let (_, ct, body) = env
            .raw(&member, "GET", &format!("/image/v2/images/{image}"), vec![])
            .await;
        assert!(ct.starts_with("application/json"));
        if serde_json::from_str::<Value>(&body).unwrap()["status"] == "active" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, _, body) = env
        .raw(
            &reader,
            "DELETE",
            &format!("/image/v2/images/{image}"),
            vec![],
        )
        .await;
    assert_eq!(s, 403, "{body}");
    assert!(
        body.contains("You are not authorized to complete delete_image action."),
        "{body}"
    );
    let (s, _, _) = env
        .raw(&member, "GET", &format!("/image/v2/images/{image}"), vec![])
        .await;
    assert_eq!(s, 200, "still there");
    let (s, _, body) = env
        .raw(
            &member,
            "DELETE",
            &format!("/image/v2/images/{image}"),
            vec![],
        )
        .await;
    assert_eq!(s, 204, "{body}");

    // Floating IPs through the Networking API: members allocate, readers
    // see but cannot release (Neutron's delete_floatingip needs a member).
    let (s, _, body) = env
        .raw(&member, "GET", "/network/v2.0/networks?name=public", vec![])
        .await;
    assert_eq!(s, 200, "{body}");
    let public = serde_json::from_str::<Value>(&body).unwrap()["networks"][0]["id"]
        .as_str()
        .expect("the public network")
        .to_string();
    let (s, _, body) = env
        .raw(
            &member,
            "POST",
            "/network/v2.0/floatingips",
            json!({"floatingip": {"floating_network_id": public}})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let fip = serde_json::from_str::<Value>(&body).unwrap()["floatingip"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/network/v2.0/floatingips/{fip}");
    let (s, _, body) = env.raw(&reader, "GET", &path, vec![]).await;
    assert_eq!(s, 200, "a reader sees it: {body}");
    let (s, ct, body) = env.raw(&reader, "DELETE", &path, vec![]).await;
    assert_eq!(s, 403, "{body}");
    assert!(ct.starts_with("application/json"), "{ct}");
    assert!(
        body.contains("rule:delete_floatingip is disallowed by policy"),
        "{body}"
    );
    let (s, _, _) = env.raw(&member, "GET", &path, vec![]).await;
    assert_eq!(s, 200, "still there");
    let (s, _, body) = env.raw(&member, "DELETE", &path, vec![]).await;
    assert_eq!(s, 204, "{body}");
    let (s, _, _) = env.raw(&member, "GET", &path, vec![]).await;
    assert_eq!(s, 404, "released");
}

/// Nova's flavor list: a member sees public flavors plus the private ones
/// their project was given access to; an admin's default list (is_public
/// absent = true) does the same for the admin's project, `is_public=none`
/// shows all and `is_public=false` only private ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flavor_list_includes_private_flavors_granted_to_the_project() {
    let env = start().await;
    let member = env.login("member", PASSWORD, "demo").await;
    let admin = env.admin.clone();
    for id in ["granted", "other"] {
        let (s, v) = env
            .call(
                &admin,
                "POST",
                "/flavors",
                MV,
                Some(json!({"flavor": {
                "name": id, "id": id, "vcpus": 1, "ram": 256, "disk": 1,
                "os-flavor-access:is_public": false}})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, v) = env
        .call(
            &admin,
            "POST",
            "/flavors/granted/action",
            MV,
            Some(json!({"addTenantAccess": {"tenant": env.demo}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let ids = |v: &Value| -> Vec<String> {
        v["flavors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect()
    };
    for path in ["/flavors", "/flavors/detail"] {
        let (s, v) = env.call(&member, "GET", path, MV, None).await;
        assert_eq!(s, 200, "{v}");
        let got = ids(&v);
        assert!(got.contains(&"granted".to_string()), "{path}: {got:?}");
        assert!(!got.contains(&"other".to_string()), "{path}: {got:?}");
        assert!(got.contains(&"1".to_string()), "{path}: {got:?}");
    }
    let (_, v) = env.call(&admin, "GET", "/flavors", MV, None).await;
    let got = ids(&v);
    assert!(!got.contains(&"granted".to_string()), "{got:?}");
    assert!(!got.contains(&"other".to_string()), "{got:?}");
    let (_, v) = env
        .call(&admin, "GET", "/flavors?is_public=none", MV, None)
        .await;
    let got = ids(&v);
    assert!(got.contains(&"granted".to_string()) && got.contains(&"other".to_string()));
    let (_, v) = env
        .call(&admin, "GET", "/flavors?is_public=false", MV, None)
        .await;
    assert_eq!(ids(&v), vec!["granted".to_string(), "other".to_string()]);
    // A disabled granted flavor drops out of the member's list.
    let mut f = env.engine.flavor("granted").await.unwrap();
    f.disabled = true;
    env.engine.store().put(&f).await.unwrap();
    let (_, v) = env.call(&member, "GET", "/flavors", MV, None).await;
    assert!(!ids(&v).contains(&"granted".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_and_disabled_flavors() {
    let env = start().await;
    let member = env.login("member", PASSWORD, "demo").await;
    let admin = env.admin.clone();
    for (id, vcpus) in [("priv1", 1), ("priv2", 2)] {
        let (s, v) = env
            .call(
                &admin,
                "POST",
                "/flavors",
                MV,
                Some(json!({"flavor": {
                "name": id, "id": id, "vcpus": vcpus, "ram": 256, "disk": 1,
                "os-flavor-access:is_public": false}})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let create =
        |flavor: &str| json!({"server": {"name": "p", "flavorRef": flavor, "networks": "none"}});
    let (s, v) = env
        .call(&member, "POST", "/servers", MV, Some(create("priv1")))
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        v["badRequest"]["message"],
        "Flavor priv1 could not be found."
    );

    // Access list: admin only; public flavors have none.
    let (s, _) = env
        .call(&member, "GET", "/flavors/priv1/os-flavor-access", MV, None)
        .await;
    assert_eq!(s, 403);
    let (s, v) = env
        .call(&admin, "GET", "/flavors/1/os-flavor-access", MV, None)
        .await;
    assert_eq!(s, 404);
    assert_eq!(
        v["itemNotFound"]["message"],
        "Access list not available for public flavors."
    );
    let (s, v) = env
        .call(
            &admin,
            "POST",
            "/flavors/priv1/action",
            MV,
            Some(json!({"addTenantAccess": {"tenant": env.demo}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["flavor_access"],
        json!([{"flavor_id": "priv1", "tenant_id": env.demo}])
    );
    let (s, _) = env
        .call(
            &admin,
            "POST",
            "/flavors/priv1/action",
            MV,
            Some(json!({"addTenantAccess": {"tenant": env.demo}})),
        )
        .await;
    assert_eq!(s, 409);

    let (s, v) = env
        .call(&member, "POST", "/servers", MV, Some(create("priv1")))
        .await;
    assert_eq!(s, 202, "{v}");
    let id = v["server"]["id"].as_str().unwrap().to_string();
    env.wait(&member, &id, "ACTIVE").await;

    // Resize to a private flavor without access, and to a disabled one.
    let resize = |f: &str| json!({"resize": {"flavorRef": f}});
    let (s, v) = env
        .call(
            &member,
            "POST",
            &format!("/servers/{id}/action"),
            MV,
            Some(resize("priv2")),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let mut f = env.engine.flavor("3").await.unwrap();
    f.disabled = true;
    env.engine.store().put(&f).await.unwrap();
    let (s, v) = env
        .call(
            &member,
            "POST",
            &format!("/servers/{id}/action"),
            MV,
            Some(resize("3")),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        env.wait(&member, &id, "ACTIVE").await["flavor"]["original_name"],
        "priv1"
    );
    // With access, resize works.
    let (s, _) = env
        .call(
            &admin,
            "POST",
            "/flavors/priv2/action",
            MV,
            Some(json!({"addTenantAccess": {"tenant": env.demo}})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = env
        .call(
            &member,
            "POST",
            &format!("/servers/{id}/action"),
            MV,
            Some(resize("priv2")),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    env.wait(&member, &id, "VERIFY_RESIZE").await;
    let (s, v) = env
        .call(
            &admin,
            "POST",
            "/flavors/priv1/action",
            MV,
            Some(json!({"removeTenantAccess": {"tenant": "nobody"}})),
        )
        .await;
    assert_eq!(s, 404, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_follow_nova() {
    let env = start().await;
    let member = env.login("member", PASSWORD, "demo").await;
    let admin = env.admin.clone();
    let demo = env.demo.clone();

    let (s, v) = env
        .call(&member, "GET", &format!("/os-quota-sets/{demo}"), MV, None)
        .await;
    assert_eq!(s, 200, "{v}");
    let q = &v["quota_set"];
    assert_eq!(
        (
            q["instances"].clone(),
            q["cores"].clone(),
            q["ram"].clone(),
            q["key_pairs"].clone(),
            q["metadata_items"].clone(),
            q["server_groups"].clone(),
            q["server_group_members"].clone()
        ),
        (
            json!(10),
            json!(20),
            json!(51200),
            json!(100),
            json!(128),
            json!(10),
            json!(10)
        )
    );
    assert_eq!(q["id"], demo);
    let (s, _) = env
        .call(&member, "GET", "/os-quota-sets/someone-else", MV, None)
        .await;
    assert_eq!(s, 403);
    let (s, v) = env
        .call(
            &member,
            "GET",
            &format!("/os-quota-sets/{demo}/defaults"),
            MV,
            None,
        )
        .await;
    assert_eq!((s, v["quota_set"]["instances"].clone()), (200, json!(10)));

    // 100000 servers: refused at once, nothing created.
    let t = Instant::now();
    let (s, v) = env
        .call(
            &member,
            "POST",
            "/servers",
            MV,
            Some(json!({"server": {
            "name": "many", "flavorRef": "1", "networks": "none",
            "min_count": 100000, "max_count": 100000}})),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(
        v["forbidden"]["message"],
        "Quota exceeded for cores, instances, ram: Requested 100000, 100000, 12800000, but already used 0, 0, 0 of 20, 10, 51200 cores, instances, ram"
    );
    let (_, v) = env.call(&member, "GET", "/servers", MV, None).await;
    assert_eq!(v["servers"], json!([]));

    // Admin sets instances = 2; only admins may.
    let (s, v) = env
        .call(
            &member,
            "PUT",
            &format!("/os-quota-sets/{demo}"),
            MV,
            Some(json!({"quota_set": {"instances": 2}})),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = env
        .call(
            &admin,
            "PUT",
            &format!("/os-quota-sets/{demo}"),
            MV,
            Some(json!({"quota_set": {"instances": 2, "bogus": 1}})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = env
        .call(
            &admin,
            "PUT",
            &format!("/os-quota-sets/{demo}"),
            MV,
            Some(json!({"quota_set": {"instances": 2}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["quota_set"]["instances"], 2);
    assert!(v["quota_set"].get("id").is_none());

    // min 1, max 5 with room for 2: Nova creates 2.
    let (s, v) = env
        .call(
            &member,
            "POST",
            "/servers",
            MV,
            Some(json!({"server": {
            "name": "some", "flavorRef": "1", "networks": "none",
            "min_count": 1, "max_count": 5, "return_reservation_id": true}})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let (_, v) = env.call(&member, "GET", "/servers", MV, None).await;
    assert_eq!(v["servers"].as_array().unwrap().len(), 2);
    let (s, v) = env
        .call(
            &member,
            "POST",
            "/servers",
            MV,
            Some(json!({"server": {
            "name": "one-more", "flavorRef": "1", "networks": "none"}})),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(
        v["forbidden"]["message"],
        "Quota exceeded for instances: Requested 1, but already used 2 of 2 instances"
    );
    let (s, v) = env
        .call(&member, "POST", "/servers", MV, Some(json!({"server": {
            "name": "range", "flavorRef": "1", "networks": "none", "min_count": 2, "max_count": 3}})))
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(
        v["forbidden"]["message"],
        "Quota exceeded for instances: Requested 2-3, but already used 2 of 2 instances"
    );

    // Lowering below usage needs force.
    let (s, v) = env
        .call(
            &admin,
            "PUT",
            &format!("/os-quota-sets/{demo}"),
            MV,
            Some(json!({"quota_set": {"instances": 1}})),
        )
        .await;
    assert_eq!(s, 400, "{v}");

    // limits and detail show quota and usage.
    let (s, v) = env.call(&member, "GET", "/limits", MV, None).await;
    assert_eq!(s, 200);
    let a = &v["limits"]["absolute"];
    assert_eq!(
        (
            a["maxTotalInstances"].clone(),
            a["totalInstancesUsed"].clone()
        ),
        (json!(2), json!(2))
    );
    assert_eq!(
        (a["maxTotalCores"].clone(), a["totalCoresUsed"].clone()),
        (json!(20), json!(2))
    );
    assert_eq!(
        (a["maxTotalRAMSize"].clone(), a["totalRAMUsed"].clone()),
        (json!(51200), json!(256))
    );
    assert_eq!(a["maxTotalKeypairs"], 100);
    let (s, v) = env
        .call(
            &member,
            "GET",
            &format!("/os-quota-sets/{demo}/detail"),
            MV,
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        v["quota_set"]["instances"],
        json!({"in_use": 2, "limit": 2, "reserved": 0})
    );

    // Cores: a 2-vCPU flavor over a 1-core quota.
    let (s, _) = env
        .call(
            &admin,
            "PUT",
            &format!("/os-quota-sets/{demo}"),
            MV,
            Some(json!({"quota_set": {"instances": 10, "cores": 2}})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = env
        .call(
            &member,
            "POST",
            "/servers",
            MV,
            Some(json!({"server": {
            "name": "big", "flavorRef": "5", "networks": "none"}})),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(
        v["forbidden"]["message"],
        "Quota exceeded for cores: Requested 2, but already used 2 of 2 cores"
    );
    // Resize up past the cores quota.
    let (_, v) = env.call(&member, "GET", "/servers", MV, None).await;
    let sid = v["servers"][0]["id"].as_str().unwrap().to_string();
    env.wait(&member, &sid, "ACTIVE").await;
    let (s, v) = env
        .call(
            &member,
            "POST",
            &format!("/servers/{sid}/action"),
            MV,
            Some(json!({"resize": {"flavorRef": "6"}})),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(
        v["forbidden"]["message"],
        "Quota exceeded for cores: Requested 1, but already used 2 of 2 cores"
    );

    // Metadata items.
    let meta: serde_json::Map<String, Value> =
        (0..129).map(|i| (format!("k{i}"), json!("v"))).collect();
    let (s, v) = env
        .call(
            &member,
            "POST",
            "/servers",
            MV,
            Some(json!({"server": {
            "name": "meta", "flavorRef": "1", "networks": "none", "metadata": meta}})),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(
        v["forbidden"]["message"],
        "Maximum number of metadata items exceeds 128"
    );

    // Key pairs.
    let (s, _) = env
        .call(
            &admin,
            "PUT",
            &format!("/os-quota-sets/{demo}"),
            MV,
            Some(json!({"quota_set": {"key_pairs": 1}})),
        )
        .await;
    assert_eq!(s, 200);
    let key = |n: &str| json!({"keypair": {"name": n, "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f test"}});
    let (s, v) = env
        .call(&member, "POST", "/os-keypairs", MV, Some(key("k1")))
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = env
        .call(&member, "POST", "/os-keypairs", MV, Some(key("k2")))
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(
        v["forbidden"]["message"],
        "Quota exceeded, too many key pairs."
    );

    // Delete reverts to the defaults; the default class is admin-editable.
    let (s, _) = env
        .call(
            &admin,
            "DELETE",
            &format!("/os-quota-sets/{demo}"),
            MV,
            None,
        )
        .await;
    assert_eq!(s, 202);
    let (s, v) = env
        .call(
            &admin,
            "PUT",
            "/os-quota-class-sets/default",
            MV,
            Some(json!({"quota_class_set": {"instances": -1, "cores": -1, "ram": -1}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = env
        .call(&member, "GET", &format!("/os-quota-sets/{demo}"), MV, None)
        .await;
    assert_eq!(v["quota_set"]["instances"], -1);
    let (s, v) = env
        .call(
            &member,
            "POST",
            "/servers",
            MV,
            Some(json!({"server": {
            "name": "free", "flavorRef": "6", "networks": "none", "min_count": 3}})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
}

async fn console_token(env: &common::Env, member: &str, id: &str) -> String {
    let (s, v) = env
        .call(
            member,
            "POST",
            &format!("/servers/{id}/remote-consoles"),
            MV,
            Some(json!({"remote_console": {"protocol": "serial", "type": "serial"}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let url = v["remote_console"]["url"].as_str().unwrap().to_string();
    url.split("token=").nth(1).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_tokens_are_single_use_and_bound() {
    let env = start().await;
    let member = env.login("member", PASSWORD, "demo").await;
    let id = env.boot(&member, "c1", "1").await;
    // Single use.
    let t = console_token(&env, &member, &id).await;
    let (sid, _) = env.engine.console_target(&t).await.expect("first use");
    assert_eq!(sid, id);
    assert!(
        env.engine.console_target(&t).await.is_none(),
        "second use refused"
    );
    assert!(env.engine.console_target("made-up").await.is_none());
    // Bound to the user: a disabled user's token is dead.
    let t = console_token(&env, &member, &id).await;
    let mut u = env.engine.user("member").await.unwrap();
    u.enabled = false;
    env.engine.store().put(&u).await.unwrap();
    assert!(env.engine.console_target(&t).await.is_none());
    u.enabled = true;
    env.engine.store().put(&u).await.unwrap();
    // Dead once the server is deleted.
    let t = console_token(&env, &member, &id).await;
    let (s, _) = env
        .call(&member, "DELETE", &format!("/servers/{id}"), MV, None)
        .await;
    assert_eq!(s, 204);
    for _ in 0..100 {
        let (s, _) = env
            .call(&member, "GET", &format!("/servers/{id}"), MV, None)
            .await;
        if s == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(env.engine.console_target(&t).await.is_none());
}

/// A disabled flavor is refused as Nova does (`_validate_and_build_base_options` and
/// `resize` raise FlavorNotFound, which servers.py answers with 400 and its message), for
/// create and resize, through the Compute API and the native API, for admins too, and no
/// server is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_flavors_are_refused_for_create_and_resize_through_both_apis() {
    let env = start().await;
    let member = env.login("member", PASSWORD, "demo").await;
    let (s, v) = env
        .call(
            &env.admin,
            "POST",
            "/flavors",
            MV,
            Some(
                json!({"flavor": {"name": "dis", "id": "dis", "vcpus": 1, "ram": 256, "disk": 1}}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let id = env.boot(&member, "d1", "1").await;
    let mut f = env.engine.flavor("dis").await.unwrap();
    f.disabled = true;
    env.engine.store().put(&f).await.unwrap();
    let gone = "Flavor dis could not be found.";

    for token in [&member, &env.admin] {
        let (s, v) = env
            .call(
                token,
                "POST",
                "/servers",
                MV,
                Some(json!({"server": {"name": "d2", "flavorRef": "dis", "networks": "none"}})),
            )
            .await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v, json!({"badRequest": {"code": 400, "message": gone}}));
        let (s, v) = env
            .native(
                token,
                "POST",
                "/api/v1/servers",
                Some(json!({"name": "d2", "flavor": "dis"})),
            )
            .await;
        // the native front answers a name that is not there (to this caller) 404
        assert_eq!(s, 404, "{v}");
        assert_eq!(v["error"]["code"], "not_found", "{v}");
        assert_eq!(v["error"]["message"], gone, "{v}");
    }

    let (s, v) = env
        .call(
            &member,
            "POST",
            &format!("/servers/{id}/action"),
            MV,
            Some(json!({"resize": {"flavorRef": "dis"}})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v, json!({"badRequest": {"code": 400, "message": gone}}));
    let (s, v) = env
        .native(
            &member,
            "POST",
            &format!("/api/v1/servers/{id}/actions"),
            Some(json!({"action": "resize", "flavor": "dis"})),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["error"]["message"], gone, "{v}");

    let (_, v) = env
        .call(&env.admin, "GET", "/servers?all_tenants=1", MV, None)
        .await;
    let servers = v["servers"].as_array().unwrap();
    assert_eq!(
        servers.len(),
        1,
        "no server made with a disabled flavor: {v}"
    );
    let (_, v) = env
        .call(&member, "GET", &format!("/servers/{id}"), MV, None)
        .await;
    assert_eq!(v["server"]["status"], "ACTIVE", "{v}");
    assert_eq!(v["server"]["flavor"]["original_name"], "m1.nano", "{v}");
}
