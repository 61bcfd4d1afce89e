-- Change notifications for watch streams: every replica LISTENs and fans events out to its subscribers.
-- Triggers (not application code) publish them, so no code path that changes a build, a job, an agent or a
-- workspace can forget to. NOTIFY is transactional: events are delivered on commit, in commit order.

CREATE FUNCTION notify_build_change(build_id uuid) RETURNS void AS $$
DECLARE
    b record;
BEGIN
    SELECT wb.id, wb.workspace_id, wb.build_number, wb.transition, j.job_status, w.owner_id, w.name
      INTO b
      FROM workspace_builds wb
      JOIN provisioner_jobs j ON j.id = wb.job_id
      JOIN workspaces w ON w.id = wb.workspace_id
     WHERE wb.id = build_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM pg_notify('workspace_build_updates', json_build_object(
        'workspace_id', b.workspace_id,
        'workspace_name', b.name,
        'owner_id', b.owner_id,
        'build_id', b.id,
        'build_number', b.build_number,
        'transition', b.transition,
        'job_status', b.job_status,
        'changed_at', now())::text);
    PERFORM pg_notify('workspace_updates', b.workspace_id::text);
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION notify_job_change() RETURNS trigger AS $$
DECLARE
    build_id uuid;
BEGIN
    -- Heartbeats update the row constantly; only status changes are events.
    IF NEW.type <> 'workspace_build' OR NEW.job_status IS NOT DISTINCT FROM OLD.job_status THEN
        RETURN NEW;
    END IF;
    SELECT id INTO build_id FROM workspace_builds WHERE job_id = NEW.id;
    IF build_id IS NOT NULL THEN
        PERFORM notify_build_change(build_id);
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER provisioner_jobs_notify
    AFTER UPDATE ON provisioner_jobs
    FOR EACH ROW EXECUTE FUNCTION notify_job_change();

CREATE FUNCTION notify_build_insert() RETURNS trigger AS $$
BEGIN
    PERFORM notify_build_change(NEW.id);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER workspace_builds_notify
    AFTER INSERT ON workspace_builds
    FOR EACH ROW EXECUTE FUNCTION notify_build_insert();

CREATE FUNCTION notify_agent_change() RETURNS trigger AS $$
DECLARE
    ws uuid;
BEGIN
    IF NEW.lifecycle_state IS NOT DISTINCT FROM OLD.lifecycle_state
       AND NEW.first_connected_at IS NOT DISTINCT FROM OLD.first_connected_at
       AND NEW.version IS NOT DISTINCT FROM OLD.version THEN
        RETURN NEW;
    END IF;
    SELECT b.workspace_id INTO ws
      FROM workspace_resources r JOIN workspace_builds b ON b.job_id = r.job_id
     WHERE r.id = NEW.resource_id;
    IF ws IS NOT NULL THEN
        PERFORM pg_notify('workspace_updates', ws::text);
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER workspace_agents_notify
    AFTER UPDATE ON workspace_agents
    FOR EACH ROW EXECUTE FUNCTION notify_agent_change();

CREATE FUNCTION notify_workspace_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('workspace_updates', NEW.id::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER workspaces_notify
    AFTER UPDATE ON workspaces
    FOR EACH ROW EXECUTE FUNCTION notify_workspace_change();
