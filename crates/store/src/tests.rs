//! The same suite against SQLite and PostgreSQL.
//!
//! PostgreSQL: set `LIFEBOAT_TEST_PG_URL` (e.g.
//! `postgres://lifeboat:...@127.0.0.1/lifeboat_test`); each run creates and
//! drops its own database. Without it the PostgreSQL test fails under CI
//! (`CI` set) and is skipped with a message otherwise.

use super::*;
use lifeboat_core::*;

pub(crate) fn server(id: &str, project: &str, name: &str) -> Server {
    Server {
        instance_name: "instance-00000001".into(),
        reservation_id: "r-1".into(),
        ..Server::new(id, name, project, "u", &Flavor::defaults()[0], now())
    }
}

/// Per-host usage aggregated over every server (what the triggers keep).
async fn aggregate_usage(store: &Store) -> std::collections::HashMap<String, (i64, i64, i64)> {
    use sqlx::Row;
    let mut out: std::collections::HashMap<String, (i64, i64, i64)> = Default::default();
    for sql in [
        "SELECT host AS h, CAST(SUM(vcpus) AS BIGINT) AS c, CAST(SUM(ram_mb) AS BIGINT) AS r,
         CAST(SUM(disk_gb) AS BIGINT) AS d FROM servers WHERE host IS NOT NULL GROUP BY host",
        "SELECT source_host AS h, CAST(SUM(src_vcpus) AS BIGINT) AS c,
         CAST(SUM(src_ram_mb) AS BIGINT) AS r, CAST(SUM(src_disk_gb) AS BIGINT) AS d
         FROM servers WHERE source_host IS NOT NULL GROUP BY source_host",
    ] {
        for row in sqlx::query(sql).fetch_all(&store.pool).await.unwrap() {
            let e = out.entry(row.try_get("h").unwrap()).or_default();
            e.0 += row.try_get::<i64, _>("c").unwrap();
            e.1 += row.try_get::<i64, _>("r").unwrap();
            e.2 += row.try_get::<i64, _>("d").unwrap();
        }
    }
    out
}

async fn suite(store: &Store) {
    // servers: insert, CAS, conflict, list, filters, pagination
    let mut ids = vec![];
    for i in 0..25 {
        let id = format!("00000000-0000-0000-0000-{i:012}");
        let p = if i % 2 == 0 { "pa" } else { "pb" };
        store
            .insert_server(&server(&id, p, &format!("web-{i}")))
            .await
            .unwrap();
        ids.push(id);
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let s = store.get_server(&ids[0]).await.unwrap().unwrap();
    assert_eq!(s.version, 1);
    let mut a = s.clone();
    a.vm_state = VmState::Active;
    a.task_state = None;
    let a2 = store.cas_server(&a).await.unwrap();
    assert_eq!(a2.version, 2);
    // a stale writer loses
    let mut stale = s.clone();
    stale.task_state = Some(TaskState::Deleting);
    assert!(matches!(
        store.cas_server(&stale).await,
        Err(StoreError::Conflict(_))
    ));
    let mut ghost = s.clone();
    ghost.id = "nope".into();
    assert!(matches!(
        store.cas_server(&ghost).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.get_server(&ids[0]).await.unwrap().unwrap().vm_state,
        VmState::Active
    );
    assert_eq!(store.servers_with_tasks().await.unwrap().len(), 24);

    let all = store.list_servers(&ServerQuery::default()).await.unwrap();
    assert_eq!(all.len(), 25);
    assert_eq!(all[0].id, ids[24], "newest first");
    let pa = store
        .list_servers(&ServerQuery {
            project_id: Some("pa".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pa.len(), 13);
    let act = store
        .list_servers(&ServerQuery {
            vm_states: Some(vec![VmState::Active]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(act.len(), 1);
    let named = store
        .list_servers(&ServerQuery {
            name_contains: Some("web-1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(named.len(), 11); // web-1, web-10..web-19
    let pct = store
        .list_servers(&ServerQuery {
            name_contains: Some("%".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(pct.is_empty(), "LIKE wildcards are escaped");
    // walk pages of 7
    let mut seen = vec![];
    let mut marker = None;
    loop {
        let page = store
            .list_servers(&ServerQuery {
                limit: Some(7),
                marker: marker.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        marker = Some(page.last().unwrap().id.clone());
        seen.extend(page.into_iter().map(|s| s.id));
    }
    assert_eq!(seen.len(), 25);
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 25);
    assert!(matches!(
        store
            .list_servers(&ServerQuery {
                marker: Some("bad".into()),
                ..Default::default()
            })
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.count_servers(Some("pb")).await.unwrap(), 12);

    assert!(store.purge_server(&ids[1]).await.unwrap());
    assert_eq!(store.count_servers(None).await.unwrap(), 24);
    // per-host usage, including a resize source
    let mut h = store.get_server(&ids[3]).await.unwrap().unwrap();
    h.host = Some("h1".into());
    let h = store.cas_server(&h).await.unwrap();
    let mut m = store.get_server(&ids[4]).await.unwrap().unwrap();
    m.host = Some("h2".into());
    m.source_host = Some("h1".into());
    m.old_flavor = Some((&Flavor::defaults()[3]).into());
    store.cas_server(&m).await.unwrap();
    let usage = store.host_usage().await.unwrap();
    assert_eq!(usage["h1"], (2, 128 + 512, 1 + 2));
    assert_eq!(usage["h2"], (1, 128, 1));
    let mut gone = h.clone();
    gone.vm_state = VmState::Deleted;
    let gone = store.cas_server(&gone).await.unwrap();
    assert_eq!(store.host_usage().await.unwrap()["h1"], (1, 512, 2));
    let mut back = gone.clone();
    back.vm_state = VmState::Active;
    store.cas_server(&back).await.unwrap();
    // The kept usage (triggers) is the aggregate over the servers, also
    // after a move ends and a purge.
    assert_eq!(
        store.host_usage().await.unwrap(),
        aggregate_usage(store).await
    );
    let mut m = store.get_server(&ids[4]).await.unwrap().unwrap();
    m.source_host = None;
    m.old_flavor = None;
    store.cas_server(&m).await.unwrap();
    assert_eq!(store.host_usage().await.unwrap()["h1"], (1, 128, 1));
    assert!(store.purge_server(&ids[4]).await.unwrap());
    let usage = store.host_usage().await.unwrap();
    assert_eq!(usage["h2"], (0, 0, 0));
    assert_eq!(usage["h1"], (1, 128, 1));
    assert_eq!(
        usage
            .into_iter()
            .filter(|(_, u)| *u != (0, 0, 0))
            .collect::<std::collections::HashMap<_, _>>(),
        aggregate_usage(store).await
    );

    // records: insert, duplicate names, owner/ref lookups
    for f in Flavor::defaults() {
        store.insert(&f).await.unwrap();
    }
    let mut dup = Flavor::defaults()[0].clone();
    dup.id = "99".into();
    assert!(matches!(
        store.insert(&dup).await,
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(store.list::<Flavor>().await.unwrap().len(), 6);
    let f: Flavor = store.must_get("3").await.unwrap();
    assert_eq!(f.name, "m1.tiny");
    assert!(store
        .find_by_name::<Flavor>("", "m1.small")
        .await
        .unwrap()
        .is_some());
    assert!(store.delete::<Flavor>("3").await.unwrap());
    assert!(!store.delete::<Flavor>("3").await.unwrap());
    let port = Port {
        id: "p1".into(),
        network_id: "n1".into(),
        server_id: Some(ids[0].clone()),
        mac_address: "fa:16:3e:00:00:01".into(),
        fixed_ip: "10.0.0.2".into(),
        project_id: "pa".into(),
    };
    store.insert(&port).await.unwrap();
    let mut clash = port.clone();
    clash.id = "p2".into();
    assert!(
        matches!(store.insert(&clash).await, Err(StoreError::Duplicate(_))),
        "one IP per network"
    );
    assert_eq!(
        store.list_by_ref::<Port>(&ids[0]).await.unwrap(),
        vec![port]
    );
    store
        .put(&RoleAssignment {
            user_id: "u1".into(),
            project_id: "pa".into(),
            role: "reader".into(),
        })
        .await
        .unwrap();
    store
        .put(&RoleAssignment {
            user_id: "u1".into(),
            project_id: "pa".into(),
            role: "member".into(),
        })
        .await
        .unwrap();
    assert_eq!(store.role_of("u1", "pa").await.unwrap(), Some(Role::Member));
    assert_eq!(store.role_of("u1", "pb").await.unwrap(), None);
    store.set_setting("k", "v1").await.unwrap();
    store.set_setting("k", "v2").await.unwrap();
    assert_eq!(store.setting("k").await.unwrap().as_deref(), Some("v2"));

    // counters are atomic under concurrency
    let mut handles = vec![];
    for _ in 0..20 {
        let st = store.clone();
        handles.push(tokio::spawn(async move {
            st.next_counter("instance").await.unwrap()
        }));
    }
    let mut got: Vec<i64> = vec![];
    for h in handles {
        got.push(h.await.unwrap());
    }
    got.sort();
    assert_eq!(got, (1..=20).collect::<Vec<_>>());

    // concurrent CAS: exactly one of N writers wins
    let base = store.get_server(&ids[2]).await.unwrap().unwrap();
    let mut handles = vec![];
    for i in 0..8 {
        let st = store.clone();
        let mut s = base.clone();
        s.name = format!("w{i}");
        handles.push(tokio::spawn(async move { st.cas_server(&s).await.is_ok() }));
    }
    let mut wins = 0;
    for h in handles {
        wins += h.await.unwrap() as i32;
    }
    assert_eq!(wins, 1);

    // workflows
    let now = now();
    let mut w = Workflow {
        id: "w1".into(),
        kind: "create".into(),
        server_id: Some(ids[0].clone()),
        project_id: Some("pa".into()),
        user_id: None,
        request_id: "req-1".into(),
        state: WorkflowState::Running,
        steps: vec![],
        params: serde_json::json!({"a": 1}),
        error: None,
        reason: None,
        created_at: now,
        updated_at: now,
    };
    store.put_workflow(&w).await.unwrap();
    assert_eq!(store.unfinished_workflows().await.unwrap().len(), 1);
    w.state = WorkflowState::Completed;
    store.put_workflow(&w).await.unwrap();
    assert!(store.unfinished_workflows().await.unwrap().is_empty());
    assert_eq!(
        store.get_workflow("w1").await.unwrap().unwrap().state,
        WorkflowState::Completed
    );
    assert_eq!(
        store.list_workflows(Some(&ids[0]), 10).await.unwrap().len(),
        1
    );

    // events
    for i in 0..5 {
        store
            .append_event(&NewEvent {
                level: Level::Info,
                server_id: Some(ids[0].clone()),
                project_id: Some("pa".into()),
                workflow_id: Some("w1".into()),
                step: Some(format!("s{i}")),
                message: format!("m{i}"),
            })
            .await
            .unwrap();
    }
    let ev = store
        .events(&EventQuery {
            server_id: Some(ids[0].clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ev.len(), 5);
    assert_eq!(ev[0].message, "m0");
    let last2 = store
        .events(&EventQuery {
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        last2.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
        ["m3", "m4"]
    );
    let after = store
        .events(&EventQuery {
            after_id: Some(ev[2].id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(after.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_suite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    suite(&store).await;
    // reopening runs no migration twice and keeps the data
    drop(store);
    let again = Store::open(&url).await.unwrap();
    assert_eq!(again.count_servers(None).await.unwrap(), 23);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_suite() {
    let url = crate::testing::fresh_pg_database().await;
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    suite(&store).await;
    drop(store);
    let again = Store::open(&url).await.unwrap();
    assert_eq!(again.count_servers(None).await.unwrap(), 23);
}

/// The schema exactly as the hand-run migrations of round 1 made it
/// (frozen here: the migration files must keep matching it).
const ROUND1_V1: &str = "
CREATE TABLE servers (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    vm_state TEXT NOT NULL,
    task_state TEXT,
    host TEXT,
    source_host TEXT,
    vcpus BIGINT NOT NULL DEFAULT 0,
    ram_mb BIGINT NOT NULL DEFAULT 0,
    disk_gb BIGINT NOT NULL DEFAULT 0,
    src_vcpus BIGINT NOT NULL DEFAULT 0,
    src_ram_mb BIGINT NOT NULL DEFAULT 0,
    src_disk_gb BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version BIGINT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX servers_project ON servers (project_id, created_at);
CREATE INDEX servers_created ON servers (created_at, id);
CREATE INDEX servers_host ON servers (host);
CREATE INDEX servers_source_host ON servers (source_host);
CREATE INDEX servers_task ON servers (task_state);
CREATE TABLE records (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    owner TEXT,
    name TEXT,
    ref_id TEXT,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX records_owner ON records (kind, owner);
CREATE INDEX records_ref ON records (kind, ref_id);
CREATE UNIQUE INDEX records_unique_name ON records (kind, owner, name);
CREATE TABLE workflows (
    id TEXT PRIMARY KEY,
    server_id TEXT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX workflows_server ON workflows (server_id, created_at);
CREATE INDEX workflows_state ON workflows (state);
CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE events (
    id ID_COLUMN,
    time TEXT NOT NULL,
    level TEXT NOT NULL,
    server_id TEXT,
    project_id TEXT,
    workflow_id TEXT,
    step TEXT,
    message TEXT NOT NULL
);
CREATE INDEX events_server ON events (server_id, id);
CREATE INDEX events_workflow ON events (workflow_id, id);
CREATE TABLE schema_version (version BIGINT NOT NULL);
INSERT INTO schema_version (version) VALUES (1)
";

const ROUND1_V2: &str = "
CREATE TABLE workflow_secrets (
    workflow_id TEXT NOT NULL,
    name TEXT NOT NULL,
    sealed TEXT NOT NULL,
    PRIMARY KEY (workflow_id, name)
);
INSERT INTO schema_version (version) VALUES (2)
";

/// Makes a database as a round-1 manager left it at schema `version`
/// (1 or 2), holding one server.
async fn round1_database(url: &str, version: i64) {
    sqlx::any::install_default_drivers();
    let pg = url.starts_with("postgres");
    let url = if pg {
        url.to_string()
    } else {
        format!("{url}?mode=rwc")
    };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let id_col = if pg {
        "BIGSERIAL PRIMARY KEY"
    } else {
        "INTEGER PRIMARY KEY AUTOINCREMENT"
    };
    let mut ddl = ROUND1_V1.replace("ID_COLUMN", id_col);
    if version >= 2 {
        ddl.push(';');
        ddl.push_str(ROUND1_V2);
    }
    for stmt in ddl.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        sqlx::query(stmt).execute(&pool).await.unwrap();
    }
    let s = server("00000000-0000-0000-0000-00000000000a", "pa", "old");
    sqlx::query(
        "INSERT INTO servers (id, project_id, name, vm_state, created_at, updated_at, version, data)
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7)",
    )
    .bind(&s.id)
    .bind(&s.project_id)
    .bind(&s.name)
    .bind(s.vm_state.as_str())
    .bind(crate::db::ts(&s.created_at))
    .bind(crate::db::ts(&s.updated_at))
    .bind(serde_json::to_string(&s).unwrap())
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

/// A round-1 database opens, keeps its data, is recorded in sqlx's
/// migrations (versions it had as applied, newer ones applied now) and no
/// longer has `schema_version`; it opens again without migrating twice.
async fn check_adopted(url: &str) {
    let store = Store::open(url).await.unwrap();
    let old = store
        .get_server("00000000-0000-0000-0000-00000000000a")
        .await
        .unwrap()
        .expect("the round-1 server survives the upgrade");
    assert_eq!(old.name, "old");
    // v3's per-host usage starts from the servers already there.
    let kept: std::collections::HashMap<_, _> = store
        .host_usage()
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, u)| *u != (0, 0, 0))
        .collect();
    assert_eq!(kept, aggregate_usage(&store).await);
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&store.pool)
            .await
            .unwrap();
    let known: Vec<i64> = store.migrator().iter().map(|m| m.version).collect();
    assert_eq!(applied, known);
    assert!(known.len() >= 2);
    assert!(
        sqlx::query("SELECT version FROM schema_version")
            .fetch_all(&store.pool)
            .await
            .is_err(),
        "schema_version is gone"
    );
    // v2's table works (applied by the migrator for a v1 database)
    store
        .put_workflow_secret(
            "w1",
            &SealedSecret {
                name: "admin_pass".into(),
                sealed: "x".into(),
            },
        )
        .await
        .unwrap();
    drop(store);
    let again = Store::open(url).await.unwrap();
    assert_eq!(again.count_servers(None).await.unwrap(), 1);
    assert_eq!(
        again.workflow_secret("w1", "admin_pass").await.unwrap(),
        Some("x".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_round1_databases_migrate_forward() {
    for version in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        round1_database(&url, version).await;
        check_adopted(&url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_round1_databases_migrate_forward() {
    for version in [1, 2] {
        let url = crate::testing::fresh_pg_database().await;
        round1_database(&url, version).await;
        check_adopted(&url).await;
    }
    // Several managers starting at once on a round-1 database: one adopts
    // it, the others find it adopted; all open it.
    let url = crate::testing::fresh_pg_database().await;
    round1_database(&url, 2).await;
    let opens = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { Store::open(&url).await.map(|_| ()) })
    });
    for o in opens.collect::<Vec<_>>() {
        o.await.unwrap().unwrap();
    }
    check_adopted(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_database_is_migrated_by_sqlx() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("new.db").display());
    let store = Store::open(&url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, store.migrator().iter().count());
}

/// The migration files make exactly the schema round 1 made (which is
/// what lets an adopted database skip them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migrations_match_the_round1_schema() {
    async fn schema(url: &str) -> Vec<(String, String)> {
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL
             AND name NOT LIKE '\\_sqlx%' ESCAPE '\\' AND name <> 'schema_version' ORDER BY name",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(n, s)| (n, s.split_whitespace().collect::<Vec<_>>().join(" ")))
            .collect()
    }
    let dir = tempfile::tempdir().unwrap();
    let old = format!("sqlite://{}", dir.path().join("old.db").display());
    round1_database(&old, 2).await;
    // Adopted (0001 and 0002 skipped), then the newer files applied: the
    // same schema as every file applied to a new database.
    drop(Store::open(&old).await.unwrap());
    let new = format!("sqlite://{}", dir.path().join("new.db").display());
    drop(Store::open(&new).await.unwrap());
    let (a, b) = (schema(&old).await, schema(&new).await);
    assert!(!a.is_empty());
    assert_eq!(a, b);
}
