"""Versioned schema migrations for the SQLite store; each runs once, in order."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the initial schema.
    """
    CREATE TABLE workspaces (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_us INTEGER NOT NULL
    );
    CREATE TABLE api_keys (
        key_hash TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspaces(id),
        label TEXT NOT NULL,
        created_us INTEGER NOT NULL
    );
    CREATE TABLE repos (
        id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspaces(id),
        url TEXT NOT NULL,
        default_branch TEXT,
        created_us INTEGER NOT NULL,
        UNIQUE (workspace_id, url)
    );
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspaces(id),
        repo_id TEXT NOT NULL REFERENCES repos(id),
        description TEXT NOT NULL,
        phase TEXT NOT NULL,
        status TEXT NOT NULL,
        approval TEXT,
        outcome TEXT,
        auto_approve INTEGER NOT NULL DEFAULT 0,
        skill_name TEXT,
        agent_name TEXT,
        branch TEXT,
        source TEXT,
        plan TEXT,
        verification TEXT,
        review TEXT,
        usage TEXT NOT NULL,
        pr_url TEXT,
        error TEXT,
        feedback TEXT,
        fix_attempts INTEGER NOT NULL DEFAULT 0,
        review_fixes INTEGER NOT NULL DEFAULT 0,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT '{}',
        diff TEXT,
        lease_owner TEXT,
        lease_expires REAL,
        last_seq INTEGER NOT NULL DEFAULT 0,
        created_us INTEGER NOT NULL,
        updated_us INTEGER NOT NULL
    );
    CREATE INDEX tasks_by_workspace ON tasks (workspace_id, created_us DESC, id DESC);
    CREATE INDEX tasks_runnable ON tasks (phase, created_us);
    CREATE TABLE task_events (
        task_id TEXT NOT NULL REFERENCES tasks(id),
        seq INTEGER NOT NULL,
        event_type TEXT NOT NULL,
        ts_us INTEGER NOT NULL,
        fields TEXT NOT NULL,
        PRIMARY KEY (task_id, seq)
    );
    CREATE TABLE webhook_deliveries (
        delivery_id TEXT PRIMARY KEY,
        event TEXT NOT NULL,
        payload BLOB NOT NULL,
        received_us INTEGER NOT NULL,
        processed_us INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT
    );
    """,
    # 2: GitHub: a repository's installation, a task's origin (one active task per issue), and
    # leases on webhook deliveries so that several workers can share them.
    """
    ALTER TABLE repos ADD COLUMN github TEXT;
    ALTER TABLE tasks ADD COLUMN source_key TEXT;
    CREATE INDEX tasks_by_source ON tasks (source_key, phase);
    ALTER TABLE webhook_deliveries ADD COLUMN lease_owner TEXT;
    ALTER TABLE webhook_deliveries ADD COLUMN lease_expires REAL;
    CREATE INDEX deliveries_pending ON webhook_deliveries (processed_us, received_us);
    """,
    # 3: payloads in their own table, so that leasing and finishing a delivery rewrite a small
    # row rather than the whole payload (up to 25 MB) each time.
    """
    CREATE TABLE webhook_payloads (
        delivery_id TEXT PRIMARY KEY REFERENCES webhook_deliveries(delivery_id),
        payload BLOB NOT NULL
    );
    INSERT INTO webhook_payloads (delivery_id, payload)
        SELECT delivery_id, payload FROM webhook_deliveries;
    ALTER TABLE webhook_deliveries DROP COLUMN payload;
    """,
    # 4: the head SHAs of pull requests already reviewed, so that none is reviewed twice.
    """
    CREATE TABLE pr_reviews (
        repository TEXT NOT NULL,
        number INTEGER NOT NULL,
        head_sha TEXT NOT NULL,
        created_us INTEGER NOT NULL,
        PRIMARY KEY (repository, number, head_sha)
    );
    """,
    # 5: pull requests whose automatic reviews someone paused (`/nimbus pause`).
    """
    CREATE TABLE pr_review_pauses (
        repository TEXT NOT NULL,
        number INTEGER NOT NULL,
        paused_by TEXT NOT NULL,
        created_us INTEGER NOT NULL,
        PRIMARY KEY (repository, number)
    );
    """,
]
