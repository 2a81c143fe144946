-- regkeeper schema, PostgreSQL dialect (migration 1). Keep in step with
-- schema.sql: same tables, columns, defaults and indexes.
-- Table names and status codes follow Portus where it has them.
-- Every time is an integer number of milliseconds since the Unix epoch, UTC.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT PRIMARY KEY,
    applied_at BIGINT NOT NULL
);

CREATE TABLE registries (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT NOT NULL,
    hostname   TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The registry's global namespace has name '' and global = 1.
CREATE TABLE namespaces (
    id          BIGSERIAL PRIMARY KEY,
    registry_id BIGINT NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    global      BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (registry_id, name)
);

-- name is the full repository name minus its namespace segment
-- (`a/b/c` is namespace `a`, name `b/c`; `app` is the global namespace's `app`).
CREATE TABLE repositories (
    id           BIGSERIAL PRIMARY KEY,
    namespace_id BIGINT NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (namespace_id, name)
);

-- scanned: 0 none, 1 working, 2 done, 3 failed.
CREATE TABLE tags (
    id              BIGSERIAL PRIMARY KEY,
    repository_id   BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    digest          TEXT NOT NULL DEFAULT '',
    image_id        TEXT NOT NULL DEFAULT '',
    media_type      TEXT NOT NULL DEFAULT '',
    size            BIGINT,
    platforms       TEXT,
    scanned         BIGINT NOT NULL DEFAULT 0,
    scan_attempts   BIGINT NOT NULL DEFAULT 0,
    scan_last_error TEXT,
    scan_not_before BIGINT,
    scan_claimed_at BIGINT,
    scan_claimant   TEXT,
    scanned_at      BIGINT,
    pulled_at       BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (repository_id, name)
);
CREATE INDEX tags_digest ON tags (digest);
CREATE INDEX tags_scanned ON tags (scanned);

-- status: 0 done, 1 progress, 2 fresh, 3 failed.
CREATE TABLE registry_events (
    id         BIGSERIAL PRIMARY KEY,
    event_id   TEXT NOT NULL UNIQUE,
    status     BIGINT NOT NULL DEFAULT 2,
    action     TEXT NOT NULL DEFAULT '',
    repository TEXT NOT NULL DEFAULT '',
    data       TEXT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    not_before BIGINT,
    claimed_at BIGINT,
    claimant   TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX registry_events_status_id ON registry_events (status, id);
-- Pending events (progress, fresh) by repository: the claim's ordering check.
CREATE INDEX registry_events_pending ON registry_events (repository, id) WHERE status IN (1, 2);
-- Pending events in arrival order: the claim walks this and stops at its limit.
CREATE INDEX registry_events_pending_id ON registry_events (id) WHERE status IN (1, 2);
-- Done events by age: pruning.
CREATE INDEX registry_events_done ON registry_events (updated_at) WHERE status = 0;

CREATE TABLE vulnerabilities (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT NOT NULL,
    scanner      TEXT NOT NULL,
    severity     TEXT NOT NULL DEFAULT '',
    severity_raw TEXT NOT NULL DEFAULT '',
    link         TEXT NOT NULL DEFAULT '',
    fixed_by     TEXT NOT NULL DEFAULT '',
    description  TEXT NOT NULL DEFAULT '',
    metadata     TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (name, scanner)
);

-- Scan results belong to a manifest digest, so one scan serves every tag
-- with that digest.
CREATE TABLE scan_results (
    id               BIGSERIAL PRIMARY KEY,
    digest           TEXT NOT NULL,
    vulnerability_id BIGINT NOT NULL REFERENCES vulnerabilities (id) ON DELETE CASCADE,
    scanner          TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    UNIQUE (digest, vulnerability_id)
);
CREATE INDEX scan_results_digest ON scan_results (digest);

-- outcome: 'ok', 'failed', 'skipped', 'timed_out'; NULL while running.
-- counts: a JSON object of the handler's counts.
CREATE TABLE job_runs (
    id          BIGSERIAL PRIMARY KEY,
    job         TEXT NOT NULL,
    handler     TEXT NOT NULL,
    trigger     TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    outcome     TEXT,
    counts      TEXT NOT NULL DEFAULT '{}',
    error       TEXT
);
CREATE INDEX job_runs_job_id ON job_runs (job, id);
