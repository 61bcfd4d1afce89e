-- Initial schema. It anticipates the later domains (templates, provisioning, workspaces, agents, prebuilds)
-- so that their migrations only add what they discover they need. Enumerations are text columns with
-- CHECK constraints: they map to Rust strings without custom sqlx types and stay readable in psql.

-- Key/value settings of the deployment: deployment id, prebuild reconciliation pause flag, ...
CREATE TABLE site_configs (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE users (
    id                 uuid PRIMARY KEY,
    email              text NOT NULL,
    username           text NOT NULL,
    name               text NOT NULL DEFAULT '',
    hashed_password    text NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    last_seen_at       timestamptz NOT NULL DEFAULT '0001-01-01 00:00:00+00',
    status             text NOT NULL DEFAULT 'dormant' CHECK (status IN ('active', 'dormant', 'suspended')),
    rbac_roles         text[] NOT NULL DEFAULT '{}',
    login_type         text NOT NULL DEFAULT 'password'
                       CHECK (login_type IN ('password', 'github', 'oidc', 'token', 'none')),
    avatar_url         text NOT NULL DEFAULT '',
    theme_preference   text NOT NULL DEFAULT '',
    deleted            boolean NOT NULL DEFAULT false,
    is_system          boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX users_username_lower_idx ON users (lower(username)) WHERE NOT deleted;
CREATE UNIQUE INDEX users_email_lower_idx ON users (lower(email)) WHERE NOT deleted;

-- System users (the prebuilds owner) are part of the schema's contract: nobody edits or removes them.
CREATE FUNCTION protect_system_users() RETURNS trigger AS $$
BEGIN
    IF OLD.is_system THEN
        RAISE EXCEPTION 'cannot % system user %', lower(TG_OP), OLD.username
            USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER users_protect_system
    BEFORE UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION protect_system_users();

-- Coder's fixed id for the owner of prebuilt workspaces. It has no password and login type none.
INSERT INTO users (id, email, username, name, login_type, status, is_system)
VALUES ('c42fdf75-3097-471c-8c33-fb52454d81c0', 'prebuilds@system', 'prebuilds', 'Prebuilds Owner',
        'none', 'active', true);

CREATE TABLE api_keys (
    id                 text PRIMARY KEY,
    hashed_secret      bytea NOT NULL,
    user_id            uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    last_used          timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    login_type         text NOT NULL,
    lifetime_seconds   bigint NOT NULL,
    token_name         text NOT NULL DEFAULT '',
    scope              text NOT NULL DEFAULT 'all'
);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id);

CREATE TABLE organizations (
    id            uuid PRIMARY KEY,
    name          text NOT NULL,
    display_name  text NOT NULL DEFAULT '',
    description   text NOT NULL DEFAULT '',
    icon          text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    is_default    boolean NOT NULL DEFAULT false,
    deleted       boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX organizations_name_lower_idx ON organizations (lower(name)) WHERE NOT deleted;
CREATE UNIQUE INDEX organizations_single_default_idx ON organizations (is_default) WHERE is_default;

CREATE TABLE organization_members (
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    roles            text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX organization_members_user_idx ON organization_members (user_id);

-- The "Everyone" group of an organization has the organization's id, as in Coder.
CREATE TABLE groups (
    id               uuid PRIMARY KEY,
    name             text NOT NULL,
    display_name     text NOT NULL DEFAULT '',
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    avatar_url       text NOT NULL DEFAULT '',
    quota_allowance  integer NOT NULL DEFAULT 0,
    source           text NOT NULL DEFAULT 'user',
    UNIQUE (organization_id, name)
);

CREATE TABLE group_members (
    user_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    group_id  uuid NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);

-- Uploaded template sources (tar), deduplicated per creator by SHA-256.
CREATE TABLE files (
    id          uuid PRIMARY KEY,
    hash        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  uuid NOT NULL REFERENCES users (id),
    mimetype    text NOT NULL,
    data        bytea NOT NULL,
    UNIQUE (hash, created_by)
);

CREATE TABLE templates (
    id                                 uuid PRIMARY KEY,
    created_at                         timestamptz NOT NULL DEFAULT now(),
    updated_at                         timestamptz NOT NULL DEFAULT now(),
    organization_id                    uuid NOT NULL REFERENCES organizations (id),
    deleted                            boolean NOT NULL DEFAULT false,
    name                               text NOT NULL,
    display_name                       text NOT NULL DEFAULT '',
    description                        text NOT NULL DEFAULT '',
    icon                               text NOT NULL DEFAULT '',
    provisioner                        text NOT NULL CHECK (provisioner IN ('terraform', 'echo')),
    active_version_id                  uuid NOT NULL,
    created_by                         uuid NOT NULL REFERENCES users (id),
    default_ttl_ms                     bigint NOT NULL DEFAULT 0,
    activity_bump_ms                   bigint NOT NULL DEFAULT 3600000,
    autostop_requirement_days_of_week  smallint NOT NULL DEFAULT 0,
    autostop_requirement_weeks         bigint NOT NULL DEFAULT 1,
    autostart_block_days_of_week       smallint NOT NULL DEFAULT 0,
    allow_user_autostart               boolean NOT NULL DEFAULT true,
    allow_user_autostop                boolean NOT NULL DEFAULT true,
    allow_user_cancel_workspace_jobs   boolean NOT NULL DEFAULT false,
    failure_ttl_ms                     bigint NOT NULL DEFAULT 0,
    time_til_dormant_ms                bigint NOT NULL DEFAULT 0,
    time_til_dormant_autodelete_ms     bigint NOT NULL DEFAULT 0,
    require_active_version             boolean NOT NULL DEFAULT false,
    deprecated                         text NOT NULL DEFAULT '',
    max_port_sharing_level             text NOT NULL DEFAULT 'owner',
    group_acl                          jsonb NOT NULL DEFAULT '{}',
    user_acl                           jsonb NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX templates_org_name_lower_idx ON templates (organization_id, lower(name)) WHERE NOT deleted;

CREATE TABLE provisioner_jobs (
    id               uuid PRIMARY KEY,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    canceled_at      timestamptz,
    completed_at     timestamptz,
    -- Liveness of the daemon running the job; a stale one is failed by any replica.
    heartbeat_at     timestamptz,
    error            text,
    error_code       text,
    organization_id  uuid NOT NULL REFERENCES organizations (id),
    initiator_id     uuid NOT NULL REFERENCES users (id),
    provisioner      text NOT NULL CHECK (provisioner IN ('terraform', 'echo')),
    storage_method   text NOT NULL DEFAULT 'file',
    type             text NOT NULL
                     CHECK (type IN ('template_version_import', 'workspace_build', 'template_version_dry_run')),
    input            jsonb NOT NULL DEFAULT '{}',
    worker_id        uuid,
    file_id          uuid NOT NULL REFERENCES files (id),
    tags             jsonb NOT NULL DEFAULT '{}',
    logs_length      integer NOT NULL DEFAULT 0,
    logs_overflowed  boolean NOT NULL DEFAULT false,
    job_status       text GENERATED ALWAYS AS (
        CASE
            WHEN completed_at IS NOT NULL THEN
                CASE
                    WHEN error IS NOT NULL AND error <> '' THEN 'failed'
                    WHEN canceled_at IS NOT NULL THEN 'canceled'
                    ELSE 'succeeded'
                END
            WHEN canceled_at IS NOT NULL THEN 'canceling'
            WHEN started_at IS NULL THEN 'pending'
            ELSE 'running'
        END
    ) STORED
);
CREATE INDEX provisioner_jobs_pending_idx ON provisioner_jobs (created_at) WHERE started_at IS NULL AND canceled_at IS NULL;
CREATE INDEX provisioner_jobs_running_idx ON provisioner_jobs (heartbeat_at) WHERE started_at IS NOT NULL AND completed_at IS NULL;

CREATE TABLE provisioner_job_logs (
    id          bigserial PRIMARY KEY,
    job_id      uuid NOT NULL REFERENCES provisioner_jobs (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    source      text NOT NULL DEFAULT 'provisioner' CHECK (source IN ('provisioner_daemon', 'provisioner')),
    level       text NOT NULL DEFAULT 'info' CHECK (level IN ('trace', 'debug', 'info', 'warn', 'error')),
    stage       text NOT NULL DEFAULT '',
    output      text NOT NULL
);
CREATE INDEX provisioner_job_logs_job_idx ON provisioner_job_logs (job_id, id);

CREATE TABLE template_versions (
    id               uuid PRIMARY KEY,
    template_id      uuid REFERENCES templates (id),
    organization_id  uuid NOT NULL REFERENCES organizations (id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    name             text NOT NULL,
    message          text NOT NULL DEFAULT '',
    readme           text NOT NULL DEFAULT '',
    job_id           uuid NOT NULL REFERENCES provisioner_jobs (id),
    created_by       uuid NOT NULL REFERENCES users (id),
    archived         boolean NOT NULL DEFAULT false,
    UNIQUE (template_id, name)
);

CREATE TABLE template_version_parameters (
    template_version_id   uuid NOT NULL REFERENCES template_versions (id) ON DELETE CASCADE,
    name                  text NOT NULL,
    display_name          text NOT NULL DEFAULT '',
    description           text NOT NULL DEFAULT '',
    type                  text NOT NULL,
    mutable               boolean NOT NULL DEFAULT false,
    default_value         text NOT NULL DEFAULT '',
    icon                  text NOT NULL DEFAULT '',
    options               jsonb NOT NULL DEFAULT '[]',
    validation_regex      text NOT NULL DEFAULT '',
    validation_min        integer,
    validation_max        integer,
    validation_error      text NOT NULL DEFAULT '',
    validation_monotonic  text NOT NULL DEFAULT '',
    required              boolean NOT NULL DEFAULT false,
    ephemeral             boolean NOT NULL DEFAULT false,
    display_order         integer NOT NULL DEFAULT 0,
    PRIMARY KEY (template_version_id, name)
);

CREATE TABLE template_version_variables (
    template_version_id  uuid NOT NULL REFERENCES template_versions (id) ON DELETE CASCADE,
    name                 text NOT NULL,
    description          text NOT NULL DEFAULT '',
    type                 text NOT NULL,
    value                text NOT NULL DEFAULT '',
    default_value        text NOT NULL DEFAULT '',
    required             boolean NOT NULL DEFAULT false,
    sensitive            boolean NOT NULL DEFAULT false,
    PRIMARY KEY (template_version_id, name)
);

CREATE TABLE template_version_presets (
    id                       uuid PRIMARY KEY,
    template_version_id      uuid NOT NULL REFERENCES template_versions (id) ON DELETE CASCADE,
    name                     text NOT NULL,
    description              text NOT NULL DEFAULT '',
    icon                     text NOT NULL DEFAULT '',
    is_default               boolean NOT NULL DEFAULT false,
    created_at               timestamptz NOT NULL DEFAULT now(),
    -- NULL when the preset has no prebuilds block (no pool).
    desired_instances        integer CHECK (desired_instances >= 0),
    -- expiration_policy.ttl in seconds; NULL or 0 = never expires.
    invalidate_after_secs    integer,
    scheduling_timezone      text NOT NULL DEFAULT '',
    prebuild_status          text NOT NULL DEFAULT 'healthy' CHECK (prebuild_status IN ('healthy', 'hard_limited', 'validation_failed')),
    last_invalidated_at      timestamptz,
    UNIQUE (template_version_id, name)
);

CREATE TABLE template_version_preset_parameters (
    id                          uuid PRIMARY KEY,
    template_version_preset_id  uuid NOT NULL REFERENCES template_version_presets (id) ON DELETE CASCADE,
    name                        text NOT NULL,
    value                       text NOT NULL,
    UNIQUE (template_version_preset_id, name)
);

CREATE TABLE template_version_preset_prebuild_schedules (
    id                 uuid PRIMARY KEY,
    preset_id          uuid NOT NULL REFERENCES template_version_presets (id) ON DELETE CASCADE,
    cron_expression    text NOT NULL,
    desired_instances  integer NOT NULL CHECK (desired_instances >= 0),
    position           integer NOT NULL DEFAULT 0
);

CREATE TABLE workspaces (
    id                 uuid PRIMARY KEY,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    owner_id           uuid NOT NULL REFERENCES users (id),
    organization_id    uuid NOT NULL REFERENCES organizations (id),
    template_id        uuid NOT NULL REFERENCES templates (id),
    deleted            boolean NOT NULL DEFAULT false,
    name               text NOT NULL,
    autostart_schedule text,
    ttl_ms             bigint,
    last_used_at       timestamptz NOT NULL DEFAULT now(),
    dormant_at         timestamptz,
    deleting_at        timestamptz,
    automatic_updates  text NOT NULL DEFAULT 'never' CHECK (automatic_updates IN ('always', 'never')),
    favorite           boolean NOT NULL DEFAULT false,
    next_start_at      timestamptz
);
-- Names are unique per owner among live workspaces; the claim path relies on this for renames.
CREATE UNIQUE INDEX workspaces_owner_name_lower_idx ON workspaces (owner_id, lower(name)) WHERE NOT deleted;
CREATE INDEX workspaces_template_idx ON workspaces (template_id) WHERE NOT deleted;

CREATE TABLE workspace_builds (
    id                          uuid PRIMARY KEY,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    workspace_id                uuid NOT NULL REFERENCES workspaces (id),
    template_version_id         uuid NOT NULL REFERENCES template_versions (id),
    build_number                integer NOT NULL,
    transition                  text NOT NULL CHECK (transition IN ('start', 'stop', 'delete')),
    initiator_id                uuid NOT NULL REFERENCES users (id),
    provisioner_state           bytea,
    job_id                      uuid NOT NULL UNIQUE REFERENCES provisioner_jobs (id),
    deadline                    timestamptz,
    max_deadline                timestamptz,
    reason                      text NOT NULL DEFAULT 'initiator',
    daily_cost                  integer NOT NULL DEFAULT 0,
    template_version_preset_id  uuid REFERENCES template_version_presets (id),
    UNIQUE (workspace_id, build_number)
);

CREATE TABLE workspace_build_parameters (
    workspace_build_id  uuid NOT NULL REFERENCES workspace_builds (id) ON DELETE CASCADE,
    name                text NOT NULL,
    value               text NOT NULL,
    PRIMARY KEY (workspace_build_id, name)
);

CREATE TABLE workspace_resources (
    id              uuid PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    job_id          uuid NOT NULL REFERENCES provisioner_jobs (id) ON DELETE CASCADE,
    transition      text NOT NULL,
    type            text NOT NULL,
    name            text NOT NULL,
    hide            boolean NOT NULL DEFAULT false,
    icon            text NOT NULL DEFAULT '',
    instance_type   text,
    daily_cost      integer NOT NULL DEFAULT 0,
    -- Evaluated attributes, compared between builds to detect resource replacement after a claim.
    attributes      jsonb NOT NULL DEFAULT '{}',
    ignore_changes  text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX workspace_resources_job_idx ON workspace_resources (job_id);

CREATE TABLE workspace_resource_metadata (
    id                     bigserial PRIMARY KEY,
    workspace_resource_id  uuid NOT NULL REFERENCES workspace_resources (id) ON DELETE CASCADE,
    key                    text NOT NULL,
    value                  text,
    sensitive              boolean NOT NULL DEFAULT false
);

CREATE TABLE workspace_agents (
    id                          uuid PRIMARY KEY,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    name                        text NOT NULL,
    resource_id                 uuid NOT NULL REFERENCES workspace_resources (id) ON DELETE CASCADE,
    auth_token                  uuid NOT NULL UNIQUE,
    first_connected_at          timestamptz,
    last_connected_at           timestamptz,
    disconnected_at             timestamptz,
    architecture                text NOT NULL DEFAULT '',
    operating_system            text NOT NULL DEFAULT '',
    environment_variables       jsonb NOT NULL DEFAULT '{}',
    directory                   text NOT NULL DEFAULT '',
    expanded_directory          text NOT NULL DEFAULT '',
    version                     text NOT NULL DEFAULT '',
    api_version                 text NOT NULL DEFAULT '',
    connection_timeout_seconds  integer NOT NULL DEFAULT 120,
    troubleshooting_url         text NOT NULL DEFAULT '',
    motd_file                   text NOT NULL DEFAULT '',
    lifecycle_state             text NOT NULL DEFAULT 'created' CHECK (lifecycle_state IN
        ('created', 'starting', 'start_timeout', 'start_error', 'ready',
         'shutting_down', 'shutdown_timeout', 'shutdown_error', 'off')),
    started_at                  timestamptz,
    ready_at                    timestamptz,
    startup_script              text NOT NULL DEFAULT '',
    startup_script_behavior     text NOT NULL DEFAULT 'non-blocking',
    startup_script_timeout_secs integer NOT NULL DEFAULT 0,
    subsystems                  text[] NOT NULL DEFAULT '{}',
    display_apps                text[] NOT NULL DEFAULT '{}',
    logs_length                 integer NOT NULL DEFAULT 0,
    logs_overflowed             boolean NOT NULL DEFAULT false,
    display_order               integer NOT NULL DEFAULT 0
);
CREATE INDEX workspace_agents_resource_idx ON workspace_agents (resource_id);

CREATE TABLE workspace_agent_log_sources (
    id                  uuid NOT NULL,
    workspace_agent_id  uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    created_at          timestamptz NOT NULL DEFAULT now(),
    display_name        text NOT NULL,
    icon                text NOT NULL DEFAULT '',
    PRIMARY KEY (workspace_agent_id, id)
);

CREATE TABLE workspace_agent_logs (
    id             bigserial PRIMARY KEY,
    agent_id       uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    output         text NOT NULL,
    level          text NOT NULL DEFAULT 'info',
    log_source_id  uuid NOT NULL
);
CREATE INDEX workspace_agent_logs_agent_idx ON workspace_agent_logs (agent_id, id);

CREATE TABLE workspace_agent_metadata (
    workspace_agent_id  uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    key                 text NOT NULL,
    display_name        text NOT NULL DEFAULT '',
    script              text NOT NULL DEFAULT '',
    interval_secs       bigint NOT NULL DEFAULT 0,
    timeout_secs        bigint NOT NULL DEFAULT 0,
    value               text NOT NULL DEFAULT '',
    error               text NOT NULL DEFAULT '',
    collected_at        timestamptz NOT NULL DEFAULT '0001-01-01 00:00:00+00',
    display_order       integer NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_agent_id, key)
);

CREATE TABLE workspace_apps (
    id             uuid PRIMARY KEY,
    created_at     timestamptz NOT NULL DEFAULT now(),
    agent_id       uuid NOT NULL REFERENCES workspace_agents (id) ON DELETE CASCADE,
    slug           text NOT NULL,
    display_name   text NOT NULL DEFAULT '',
    icon           text NOT NULL DEFAULT '',
    command        text,
    url            text,
    external       boolean NOT NULL DEFAULT false,
    subdomain      boolean NOT NULL DEFAULT false,
    sharing_level  text NOT NULL DEFAULT 'owner',
    hidden         boolean NOT NULL DEFAULT false,
    display_order  integer NOT NULL DEFAULT 0,
    UNIQUE (agent_id, slug)
);

-- One row per successful claim: feeds the claimed counter (which must survive restarts) and the audit trail.
CREATE TABLE prebuild_claims (
    workspace_id         uuid PRIMARY KEY REFERENCES workspaces (id),
    preset_id            uuid NOT NULL REFERENCES template_version_presets (id),
    claimed_by           uuid NOT NULL REFERENCES users (id),
    claimed_at           timestamptz NOT NULL DEFAULT now(),
    prebuild_created_at  timestamptz NOT NULL
);

-- Stored notifications (e.g. resource replacement on claim) for template admins.
CREATE TABLE notification_messages (
    id          uuid PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    template    text NOT NULL,
    title       text NOT NULL,
    body        text NOT NULL DEFAULT '',
    payload     jsonb NOT NULL DEFAULT '{}',
    read_at     timestamptz
);
CREATE INDEX notification_messages_user_idx ON notification_messages (user_id, created_at);
