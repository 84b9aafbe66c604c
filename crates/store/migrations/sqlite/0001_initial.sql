-- Lifeboat schema v1: servers (indexed columns + JSON record, version for
-- compare-and-set), generic records, workflows, counters and the event log.
-- (Before sqlx's migrator this was schema_version 1 of the hand-run migrations.)
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
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
