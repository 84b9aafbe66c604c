//! End to end: an engine on a temp SQLite store with the fake driver, the
//! OpenStack router on 127.0.0.1:0, driven over HTTP with reqwest.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_engine::{Engine, EngineConfig};
use lifeboat_hypervisor::fake::{FakeConfig, FakeDriver};
use serde_json::{json, Value};

struct Env {
    url: String,
    http: reqwest::Client,
    token: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = lifeboat_store::Store::open(&format!(
        "sqlite://{}",
        dir.path().join("lifeboat.db").display()
    ))
    .await
    .unwrap();
    let engine = Engine::new(store, EngineConfig::new(dir.path().to_path_buf()));
    let creds = engine.bootstrap_identity().await.unwrap().unwrap();
    engine.bootstrap_catalog(&Default::default()).await.unwrap();
    let fake = FakeDriver::new(FakeConfig::from_env("host1"));
    engine
        .add_host("host1", "local", "nova", Arc::new(fake))
        .await
        .unwrap();
    engine.start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = lifeboat_api_openstack::router(engine, url.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let c: Value = serde_json::from_slice(&std::fs::read(creds).unwrap()).unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/identity/v3/auth/tokens"))
        .json(
            &json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": c["username"], "domain": {"name": "Default"}, "password": c["password"]}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token = r.headers()["x-subject-token"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token"]["catalog"][0]["type"], "compute");
    assert_eq!(
        body["token"]["catalog"][0]["endpoints"][0]["url"],
        format!("{url}/compute/v2.1")
    );
    Env {
        url,
        http,
        token,
        _dir: dir,
    }
}

impl Env {
    async fn call(&self, method: &str, path: &str, mv: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self
            .http
            .request(m, format!("{}/compute/v2.1{path}", self.url))
            .header("X-Auth-Token", &self.token)
            .header("OpenStack-API-Version", format!("compute {mv}"));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn image_call(&self, method: &str, path: &str) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = self
            .http
            .request(m, format!("{}/image{path}", self.url))
            .header("X-Auth-Token", &self.token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn wait(&self, id: &str, status: &str) -> Value {
        for _ in 0..300 {
            let (_, v) = self
                .call("GET", &format!("/servers/{id}"), "2.100", None)
                .await;
            if v["server"]["status"] == status && v["server"]["OS-EXT-STS:task_state"].is_null() {
                return v["server"].clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server {id} never reached {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_end_to_end() {
    let env = start().await;

    // Version documents and microversion negotiation.
    let r = env
        .http
        .get(format!("{}/compute/v2.1/", env.url))
        .header("X-Auth-Token", &env.token)
        .header("OpenStack-API-Version", "compute 2.60")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["openstack-api-version"], "compute 2.60");
    assert_eq!(r.headers()["x-openstack-nova-api-version"], "2.60");
    assert!(r.headers()["vary"]
        .to_str()
        .unwrap()
        .contains("OpenStack-API-Version"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["version"]["version"], "2.100");
    let (s, v) = env.call("GET", "/servers", "2.101", None).await;
    assert_eq!(s, 406);
    assert_eq!(v["computeFault"]["code"], 406);
    let r = env
        .http
        .get(format!("{}/compute/v2.1/servers", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Create, wait, show.
    let (s, v) = env
        .call(
            "POST",
            "/servers",
            "2.100",
            Some(
                json!({"server": {"name": "e2e", "imageRef": lifeboat_engine::DEFAULT_IMAGE_ID,
                "flavorRef": "1", "networks": "auto"}}),
            ),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let id = v["server"]["id"].as_str().unwrap().to_string();
    assert!(v["server"]["adminPass"].is_string());
    let server = env.wait(&id, "ACTIVE").await;
    assert_eq!(server["flavor"]["original_name"], "m1.nano");
    assert_eq!(server["OS-EXT-SRV-ATTR:host"], "host1");
    let (_, v) = env
        .call("GET", &format!("/servers/{id}"), "2.1", None)
        .await;
    assert_eq!(v["server"]["flavor"]["id"], "1");
    assert!(v["server"].get("locked").is_none());

    // Actions: pause, wrong-state conflict, lock.
    let action_path = format!("/servers/{id}/action");
    let act = |body: Value| env.call("POST", &action_path, "2.100", Some(body));
    let (s, _) = act(json!({"pause": null})).await;
    assert_eq!(s, 202);
    env.wait(&id, "PAUSED").await;
    let (s, v) = act(json!({"pause": null})).await;
    assert_eq!(s, 409);
    assert_eq!(
        v["conflictingRequest"]["message"],
        format!("Cannot 'pause' instance {id} while it is in vm_state paused")
    );
    let (s, _) = act(json!({"unpause": null})).await;
    assert_eq!(s, 202);
    env.wait(&id, "ACTIVE").await;
    let (s, v) = act(json!({"os-getConsoleOutput": {"length": 10}})).await;
    assert_eq!(s, 200);
    assert!(v["output"].is_string());
    let (s, _) = act(json!({"createImage": {"name": "snap"}})).await;
    assert_eq!(s, 202);
    // The snapshot is in the snapshot store: active with its checksums, and
    // its data downloads from there.
    let snap = {
        let mut found = Value::Null;
        for _ in 0..200 {
            let (_, v) = env.image_call("GET", "/v2/images?name=snap").await;
            if v["images"][0]["status"] == "active" {
                found = v["images"][0].clone();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        found
    };
    assert_eq!(snap["status"], "active", "{snap}");
    assert_eq!(snap["os_hash_algo"], "sha512", "{snap}");
    let r = env
        .http
        .get(format!(
            "{}/image/v2/images/{}/file",
            env.url,
            snap["id"].as_str().unwrap()
        ))
        .header("X-Auth-Token", &env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-md5"].to_str().unwrap(),
        snap["checksum"].as_str().unwrap()
    );
    let data = r.bytes().await.unwrap();
    assert_eq!(Some(data.len() as u64), snap["size"].as_u64());
    use md5::Digest;
    assert_eq!(
        hex_of(&md5::Md5::digest(&data)),
        snap["checksum"].as_str().unwrap()
    );
    let (_, base) = env
        .image_call("GET", "/v2/images?name=lifeboat-guest")
        .await;
    let r = env
        .http
        .get(format!(
            "{}/image/v2/images/{}/file",
            env.url,
            base["images"][0]["id"].as_str().unwrap()
        ))
        .header("X-Auth-Token", &env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "a kernel+initramfs image has no disk data");
    let (s, v) = act(json!({"frobnicate": null})).await;
    assert_eq!(s, 400);
    assert_eq!(
        v["badRequest"]["message"],
        "There is no such action: frobnicate"
    );

    // Listing and pagination.
    let (s, v) = env
        .call(
            "POST",
            "/servers",
            "2.100",
            Some(
                json!({"server": {"name": "many", "flavorRef": "1", "networks": "none",
                "min_count": 5, "max_count": 5}}),
            ),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let mut seen = vec![];
    let mut path = "/servers?limit=2".to_string();
    loop {
        let (s, v) = env.call("GET", &path, "2.100", None).await;
        assert_eq!(s, 200);
        let page = v["servers"].as_array().unwrap();
        seen.extend(page.iter().map(|s| s["id"].as_str().unwrap().to_string()));
        match v["servers_links"][0]["href"].as_str() {
            Some(next) => {
                path = next
                    .strip_prefix(&format!("{}/compute/v2.1", env.url))
                    .unwrap()
                    .to_string()
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 6);

    // Metadata and tags.
    let (s, v) = env
        .call(
            "PUT",
            &format!("/servers/{id}/metadata/k"),
            "2.100",
            Some(json!({"meta": {"k": "v"}})),
        )
        .await;
    assert_eq!((s, v), (200, json!({"meta": {"k": "v"}})));
    let (s, _) = env
        .call("PUT", &format!("/servers/{id}/tags/t1"), "2.26", None)
        .await;
    assert_eq!(s, 201);
    let (s, _) = env
        .call("PUT", &format!("/servers/{id}/tags/t1"), "2.25", None)
        .await;
    assert_eq!(s, 404);

    // Images service shows the snapshot.
    let r = env
        .http
        .get(format!("{}/image/v2/images", env.url))
        .header("X-Auth-Token", &env.token)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert!(v["images"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["name"] == "snap" && i["image_type"] == "snapshot"));

    // Delete.
    let (s, _) = env
        .call("DELETE", &format!("/servers/{id}"), "2.100", None)
        .await;
    assert_eq!(s, 204);
    for _ in 0..300 {
        let (s, _) = env
            .call("GET", &format!("/servers/{id}"), "2.100", None)
            .await;
        if s == 404 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server never went away");
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A qcow2 header (v3, no backing file) followed by `n` random bytes: what
/// the upload checks is the header; the data is stored and returned as is.
fn fake_qcow2(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; 512];
    v[..4].copy_from_slice(b"QFI\xfb");
    v[7] = 3;
    v.extend((0..n).map(|_| rand::random::<u8>()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_upload_into_the_store() {
    use md5::Digest;
    let env = start().await;
    let post = |body: Value| {
        env.http
            .post(format!("{}/image/v2/images", env.url))
            .header("X-Auth-Token", &env.token)
            .json(&body)
            .send()
    };
    let put = |id: &str, ct: &str, data: Vec<u8>| {
        env.http
            .put(format!("{}/image/v2/images/{id}/file", env.url))
            .header("X-Auth-Token", &env.token)
            .header("Content-Type", ct)
            .body(data)
            .send()
    };
    // Create: queued, no data yet, Location header.
    let r = post(
        json!({"name": "up", "disk_format": "qcow2", "container_format": "bare",
        "min_disk": 1, "owner_specified.openstack.md5": "x"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let img: Value = r.json().await.unwrap();
    let id = img["id"].as_str().unwrap().to_string();
    assert_eq!(loc, format!("/v2/images/{id}"));
    assert_eq!(img["status"], "queued", "{img}");
    assert!(img["size"].is_null() && img["checksum"].is_null(), "{img}");
    assert_eq!(img["owner_specified.openstack.md5"], "x");
    let (s, _) = env
        .image_call("GET", &format!("/v2/images/{id}/file"))
        .await;
    assert_eq!(s, 204, "no data yet");

    // Bad create bodies, as Glance answers them.
    let r = post(json!({"name": "x", "disk_format": "floppy"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = post(json!({"name": "x", "size": 5})).await.unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"], "Attribute 'size' is read-only.");

    // Upload errors: media type, unknown image, data that is not qcow2.
    let data = fake_qcow2(3 << 20);
    let r = put(&id, "application/json", data.clone()).await.unwrap();
    assert_eq!(r.status(), 415);
    let r = put(
        "7d8e8f55-0000-4000-8000-000000000000",
        "application/octet-stream",
        data.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    let r = put(&id, "application/octet-stream", vec![7u8; 4096])
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (_, v) = env.image_call("GET", &format!("/v2/images/{id}")).await;
    assert_eq!(
        v["status"], "queued",
        "a failed upload restores queued: {v}"
    );
    let mut backing = data.clone();
    backing[15] = 0x80;
    let r = put(&id, "application/octet-stream", backing).await.unwrap();
    assert_eq!(r.status(), 400, "a qcow2 with a backing file is refused");

    // Missing formats.
    let r = post(json!({"name": "noformat"})).await.unwrap();
    let nf: Value = r.json().await.unwrap();
    let r = put(
        nf["id"].as_str().unwrap(),
        "application/octet-stream",
        data.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["message"],
        "Properties disk_format, container_format must be set prior to saving data."
    );

    // The upload: 204, active, checksums and size of the bytes sent.
    let r = put(&id, "application/octet-stream", data.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, v) = env.image_call("GET", &format!("/v2/images/{id}")).await;
    assert_eq!(v["status"], "active", "{v}");
    assert_eq!(v["size"].as_u64(), Some(data.len() as u64));
    assert_eq!(
        v["checksum"].as_str().unwrap(),
        hex_of(&md5::Md5::digest(&data))
    );
    assert_eq!(v["os_hash_algo"], "sha512");
    assert_eq!(
        v["os_hash_value"].as_str().unwrap(),
        hex_of(&sha2::Sha512::digest(&data))
    );
    // A second upload conflicts.
    let r = put(&id, "application/octet-stream", data.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["message"],
        "Image status transition from active to saving is not allowed"
    );
    // Download returns exactly the bytes uploaded.
    let r = env
        .http
        .get(format!("{}/image/v2/images/{id}/file", env.url))
        .header("X-Auth-Token", &env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
    // The data is a store snapshot; deleting the image deletes it.
    let store = lifeboat_datastore::StoreLocation::dir(env._dir.path().join("snapstore"))
        .open()
        .unwrap();
    assert_eq!(store.snapshots().unwrap().len(), 1);
    let (s, _) = env.image_call("DELETE", &format!("/v2/images/{id}")).await;
    assert_eq!(s, 204);
    assert_eq!(store.snapshots().unwrap().len(), 0);
}
