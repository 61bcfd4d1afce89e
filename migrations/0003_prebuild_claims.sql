-- A claimed prebuild keeps its running agents: the claim build's agents reuse the prebuild's agent
-- tokens (as Coder's provisioner does), so a token may appear on one agent row per build. The agent API
-- resolves a token through the workspace's latest build, so this cannot make an old agent valid again.
ALTER TABLE workspace_agents DROP CONSTRAINT workspace_agents_auth_token_key;
CREATE INDEX workspace_agents_auth_token_idx ON workspace_agents (auth_token);

-- Resources a claim build changed compared with the prebuild (outside lifecycle ignore_changes): feeds
-- coderd_prebuilt_workspaces_resource_replacements_total (which must survive restarts) and the admin
-- notifications.
CREATE TABLE prebuild_resource_replacements (
    id            uuid PRIMARY KEY,
    created_at    timestamptz NOT NULL DEFAULT now(),
    workspace_id  uuid NOT NULL REFERENCES workspaces (id),
    build_id      uuid NOT NULL REFERENCES workspace_builds (id),
    preset_id     uuid NOT NULL REFERENCES template_version_presets (id),
    claimed_by    uuid NOT NULL REFERENCES users (id),
    -- [{"resource": "null_resource.home", "attributes": ["triggers"]}, ...]
    replacements  jsonb NOT NULL
);
CREATE INDEX prebuild_resource_replacements_preset_idx ON prebuild_resource_replacements (preset_id);

-- The claim path's lookups: live prebuilds by owner.
CREATE INDEX prebuild_claims_preset_idx ON prebuild_claims (preset_id);
