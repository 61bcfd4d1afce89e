-- Invalidations for each replica's in-process API key cache (src/api/auth_cache.rs): any change to a
-- user, to an existing API key or to an organization membership publishes the user's id. Triggers
-- rather than application code, so no code path can forget to; delivered on commit.

CREATE FUNCTION notify_auth_change() RETURNS trigger AS $$
DECLARE
    affected uuid;
BEGIN
    IF TG_TABLE_NAME = 'users' THEN
        IF TG_OP = 'DELETE' THEN affected := OLD.id; ELSE affected := NEW.id; END IF;
    ELSE
        IF TG_OP = 'DELETE' THEN affected := OLD.user_id; ELSE affected := NEW.user_id; END IF;
    END IF;
    PERFORM pg_notify('auth_invalidations', affected::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER users_auth_invalidation
    AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION notify_auth_change();

-- New keys need no invalidation: nothing cached them yet.
CREATE TRIGGER api_keys_auth_invalidation
    AFTER UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION notify_auth_change();

CREATE TRIGGER organization_members_auth_invalidation
    AFTER INSERT OR UPDATE OR DELETE ON organization_members
    FOR EACH ROW EXECUTE FUNCTION notify_auth_change();
