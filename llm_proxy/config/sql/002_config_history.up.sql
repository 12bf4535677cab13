-- Config history and rollback, recorded by the database itself: every change to providers and
-- credentials, made by the admin API or with plain psql, is a row in config_history.
--
-- * One transaction is one config version (it used to be one statement): a psql session's
--   BEGIN; UPDATE ...; UPDATE ...; COMMIT is one change, one version, one NOTIFY.
-- * Secrets never enter the history: a provider's api_key is stored masked and as a SHA-256
--   digest; the key itself is kept, unshown, in config_secrets so that a rollback can restore
--   it. A master key was never stored (only its hash), and the hash is what the history holds.
-- * Who: the admin API sets `llm_proxy.actor` for its transaction (SET LOCAL); an edit without
--   it is recorded as the database role, `db:<role>`.

ALTER TABLE config_version ADD COLUMN txid bigint;

CREATE TABLE config_secrets (
    digest      bytea PRIMARY KEY CHECK (length(digest) = 32),
    value       text NOT NULL
);

CREATE TABLE config_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version     bigint NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    table_name  text NOT NULL CHECK (table_name IN ('providers', 'credentials')),
    row_id      bigint NOT NULL,
    operation   text NOT NULL CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
    before      jsonb,
    after       jsonb,
    changed_by  text NOT NULL
);
CREATE INDEX config_history_version ON config_history (version);
CREATE INDEX config_history_row ON config_history (table_name, row_id, version);

-- A row as the history shows it: no secret in it.
CREATE FUNCTION llm_proxy_history_row(table_name text, r jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN r IS NULL THEN NULL
        WHEN table_name = 'providers' THEN
            (r - 'api_key') || jsonb_build_object(
                'api_key',
                CASE WHEN coalesce(r->>'api_key', '') = '' THEN ''
                     WHEN length(r->>'api_key') <= 8 THEN '...'
                     ELSE left(r->>'api_key', 3) || '...' || right(r->>'api_key', 4) END,
                'api_key_sha256',
                CASE WHEN coalesce(r->>'api_key', '') = '' THEN NULL
                     ELSE encode(sha256(convert_to(r->>'api_key', 'UTF8')), 'hex') END)
        ELSE r - 'key'
    END
$$;

-- The version the current transaction produces: the next one, unless it already made one.
CREATE FUNCTION llm_proxy_pending_version() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
    t bigint;
BEGIN
    SELECT version, txid INTO v, t FROM config_version FOR UPDATE;
    IF t IS DISTINCT FROM txid_current() THEN
        v := v + 1;
    END IF;
    RETURN v;
END;
$$;

CREATE FUNCTION llm_proxy_actor() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('llm_proxy.actor', true), ''), 'db:' || session_user)
$$;

CREATE FUNCTION llm_proxy_record_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb;
    new_row jsonb;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        old_row := to_jsonb(OLD);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_row := to_jsonb(NEW);
        IF TG_TABLE_NAME = 'providers' AND coalesce(new_row->>'api_key', '') <> '' THEN
            INSERT INTO config_secrets (digest, value)
            VALUES (sha256(convert_to(new_row->>'api_key', 'UTF8')), new_row->>'api_key')
            ON CONFLICT (digest) DO NOTHING;
        END IF;
    END IF;
    -- An UPDATE that changes nothing but the timestamp is no change.
    IF TG_OP = 'UPDATE' AND (old_row - 'updated_at') = (new_row - 'updated_at') THEN
        RETURN NULL;
    END IF;
    INSERT INTO config_history (version, table_name, row_id, operation, before, after, changed_by)
    VALUES (
        llm_proxy_pending_version(), TG_TABLE_NAME,
        coalesce((new_row->>'id')::bigint, (old_row->>'id')::bigint), TG_OP,
        llm_proxy_history_row(TG_TABLE_NAME, old_row),
        llm_proxy_history_row(TG_TABLE_NAME, new_row),
        llm_proxy_actor()
    );
    RETURN NULL;
END;
$$;

-- TRUNCATE fires no row trigger: record every row as deleted, before they go.
CREATE FUNCTION llm_proxy_record_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'INSERT INTO config_history (version, table_name, row_id, operation, before, changed_by) '
        'SELECT llm_proxy_pending_version(), %L, t.id, ''DELETE'', '
        'llm_proxy_history_row(%L, to_jsonb(t)), llm_proxy_actor() FROM %I t',
        TG_TABLE_NAME, TG_TABLE_NAME, TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

CREATE TRIGGER providers_history
    AFTER INSERT OR UPDATE OR DELETE ON providers
    FOR EACH ROW EXECUTE FUNCTION llm_proxy_record_change();
CREATE TRIGGER credentials_history
    AFTER INSERT OR UPDATE OR DELETE ON credentials
    FOR EACH ROW EXECUTE FUNCTION llm_proxy_record_change();
CREATE TRIGGER providers_history_truncate
    BEFORE TRUNCATE ON providers
    FOR EACH STATEMENT EXECUTE FUNCTION llm_proxy_record_truncate();
CREATE TRIGGER credentials_history_truncate
    BEFORE TRUNCATE ON credentials
    FOR EACH STATEMENT EXECUTE FUNCTION llm_proxy_record_truncate();

-- One bump and one NOTIFY per transaction, and only for a transaction that changed a row: a
-- statement that changed nothing (an UPDATE to the same values, a DELETE of no rows, a
-- rollback to the current state) is no new version.
CREATE OR REPLACE FUNCTION llm_proxy_config_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
    t bigint;
BEGIN
    SELECT version, txid INTO v, t FROM config_version FOR UPDATE;
    IF t IS NOT DISTINCT FROM txid_current() THEN
        RETURN NULL;  -- this transaction made its version already
    END IF;
    IF NOT EXISTS (SELECT 1 FROM config_history WHERE version = v + 1) THEN
        RETURN NULL;
    END IF;
    UPDATE config_version SET version = v + 1, txid = txid_current(), changed_at = now();
    PERFORM pg_notify('llm_proxy_config', (v + 1)::text);
    RETURN NULL;
END;
$$;

-- Where history starts: the rows as they are now, recorded once at the current version.
INSERT INTO config_history (version, table_name, row_id, operation, after, changed_by)
SELECT v.version, 'providers', p.id, 'INSERT', llm_proxy_history_row('providers', to_jsonb(p)),
       'migration'
FROM providers p, config_version v;
INSERT INTO config_secrets (digest, value)
SELECT sha256(convert_to(api_key, 'UTF8')), api_key FROM providers WHERE api_key <> ''
ON CONFLICT (digest) DO NOTHING;
INSERT INTO config_history (version, table_name, row_id, operation, after, changed_by)
SELECT v.version, 'credentials', c.id, 'INSERT', llm_proxy_history_row('credentials', to_jsonb(c)),
       'migration'
FROM credentials c, config_version v;
CREATE TABLE config_history_start (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    version     bigint NOT NULL
);
INSERT INTO config_history_start (version) SELECT version FROM config_version;

-- The rows of `table_name` as they were at `target`: the latest recorded state of each row
-- at or before it, deleted rows left out; secrets restored from config_secrets.
CREATE FUNCTION llm_proxy_state_at(table_name text, target bigint) RETURNS SETOF jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN table_name = 'providers' AND (h.after->>'api_key_sha256') IS NOT NULL THEN
            (h.after - 'api_key_sha256') || jsonb_build_object('api_key', s.value)
        ELSE h.after - 'api_key_sha256'
    END
    FROM (
        SELECT DISTINCT ON (row_id) row_id, operation, after
        FROM config_history
        WHERE config_history.table_name = llm_proxy_state_at.table_name AND version <= target
        ORDER BY row_id, version DESC, id DESC
    ) h
    LEFT JOIN config_secrets s ON s.digest = decode(h.after->>'api_key_sha256', 'hex')
    WHERE h.operation <> 'DELETE'
$$;

-- Restore providers and credentials to exactly their state at `target`, in the caller's
-- transaction (itself one recorded change, announced like any other). Rows that differ are
-- replaced whole (same id), rows created since are deleted. Returns the new version.
CREATE FUNCTION llm_proxy_rollback(target bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    current bigint;
    first bigint;
    tbl text;
    missing bigint;
BEGIN
    SELECT version INTO current FROM config_version FOR UPDATE;
    SELECT version INTO first FROM config_history_start;
    IF target < first OR target > current THEN
        RAISE EXCEPTION 'config version % is not in the history (it holds versions % to %)',
            target, first, current USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF target = current THEN
        RETURN current;
    END IF;
    SELECT count(*) INTO missing
    FROM llm_proxy_state_at('providers', target) r
    WHERE (r->>'api_key') IS NULL;
    IF missing > 0 THEN
        RAISE EXCEPTION 'config version %: % provider key(s) no longer in config_secrets', target,
            missing USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH tbl IN ARRAY ARRAY['providers', 'credentials'] LOOP
        EXECUTE format(
            'CREATE TEMP TABLE llm_proxy_target ON COMMIT DROP AS '
            'SELECT (jsonb_populate_record(NULL::%I, r)).* FROM llm_proxy_state_at(%L, $1) r',
            tbl, tbl) USING target;
        -- Gone, or different in anything but the timestamp: deleted (and re-inserted below).
        EXECUTE format(
            'DELETE FROM %I t WHERE NOT EXISTS (SELECT 1 FROM llm_proxy_target g WHERE '
            '(to_jsonb(g) - ''updated_at'') = (to_jsonb(t) - ''updated_at''))', tbl);
        EXECUTE format(
            'INSERT INTO %I OVERRIDING SYSTEM VALUE SELECT g.* FROM llm_proxy_target g '
            'WHERE NOT EXISTS (SELECT 1 FROM %I t WHERE t.id = g.id)', tbl, tbl);
        DROP TABLE llm_proxy_target;
    END LOOP;
    SELECT version INTO current FROM config_version;
    RETURN current;
END;
$$;
