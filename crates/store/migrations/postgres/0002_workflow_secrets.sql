-- v2: secrets a running workflow needs (admin passwords), sealed by the
-- engine, never part of the workflow's params; deleted when it ends.
CREATE TABLE workflow_secrets (
    workflow_id TEXT NOT NULL,
    name TEXT NOT NULL,
    sealed TEXT NOT NULL,
    PRIMARY KEY (workflow_id, name)
);
