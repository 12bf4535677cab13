-- Routing policies in database mode (issue 30, docs/decisions/0003 §1): the `routing:` section
-- of the YAML file as rows an operator edits with psql, recorded in config_history, rolled back
-- with the providers and keys, and announced on `llm_proxy_config` like them. The proxy reads
-- the three tables into the YAML shape and validates them with the same code (a chain naming
-- an unknown model, a loop, a rule naming no provider: the whole reload is refused and the old
-- configuration keeps serving, the log line naming table, row and column).
--
-- * model_fallbacks: one chain per (model, reason) -- `routing.fallbacks`,
--   `context_window_fallbacks`, `content_policy_fallbacks`; `model` a name or a pattern.
-- * routing_rules: `routing.rules`, first match wins in `position` order (disabled rows skipped).
-- * routing_settings: the row `model = '*'` holds `routing.strategy/retry/deadline_secs` (the
--   defaults); every other row is a `routing.models` entry over them. `retry` is the YAML's
--   mapping ({"attempts": 3, "on": ["connect", "429"], "backoff_ms": 100, ...}).
--
-- Each table has an identity `id` beside its natural key: the config history and rollback
-- (migrations 002, 010) follow rows by id, and restore a row by deleting it and inserting it
-- back with that id. `position` and `name` are unique but deferrable, so that renumbering in one
-- statement (`UPDATE routing_rules SET position = position + 1`) works.

CREATE TABLE model_fallbacks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model       text NOT NULL
                CHECK (length(model) BETWEEN 1 AND 256 AND model !~ '[[:cntrl:]]'),
    reason      text NOT NULL DEFAULT 'any'
                CHECK (reason IN ('any', 'context_window', 'content_policy')),
    chain       text[] NOT NULL
                CHECK (cardinality(chain) >= 1 AND array_position(chain, NULL) IS NULL),
    CONSTRAINT model_fallbacks_model_reason_key UNIQUE (model, reason)
);

CREATE TABLE routing_rules (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    position    integer NOT NULL,
    name        text CHECK (name ~ '^[^[:cntrl:]]{1,128}$'),
    match       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(match) = 'object'),
    providers   text[]
                CHECK (cardinality(providers) >= 1 AND array_position(providers, NULL) IS NULL),
    model       text,
    is_enabled  boolean NOT NULL DEFAULT true,
    CONSTRAINT routing_rules_position_key UNIQUE (position) DEFERRABLE,
    CONSTRAINT routing_rules_name_key UNIQUE (name) DEFERRABLE,
    CONSTRAINT routing_rules_target_check CHECK (providers IS NOT NULL OR model IS NOT NULL)
);

CREATE TABLE routing_settings (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model           text NOT NULL UNIQUE
                    CHECK (length(model) BETWEEN 1 AND 256 AND model !~ '[[:cntrl:]]'),
    strategy        text CHECK (strategy IN ('weighted', 'latency', 'least_busy', 'cost')),
    retry           jsonb CHECK (jsonb_typeof(retry) = 'object'),
    deadline_secs   double precision CHECK (deadline_secs > 0),
    context_window  integer CHECK (context_window > 0),
    -- The defaults row: a context window is a model's own.
    CONSTRAINT routing_settings_defaults_check CHECK (model <> '*' OR context_window IS NULL)
);

-- History, rollback and NOTIFY, as for providers and credentials.
ALTER TABLE config_history DROP CONSTRAINT config_history_table_name_check;
ALTER TABLE config_history ADD CONSTRAINT config_history_table_name_check CHECK (
    table_name IN ('providers', 'credentials', 'model_fallbacks', 'routing_rules',
                   'routing_settings'));

CREATE TRIGGER model_fallbacks_history
    AFTER INSERT OR UPDATE OR DELETE ON model_fallbacks
    FOR EACH ROW EXECUTE FUNCTION llm_proxy_record_change();
CREATE TRIGGER routing_rules_history
    AFTER INSERT OR UPDATE OR DELETE ON routing_rules
    FOR EACH ROW EXECUTE FUNCTION llm_proxy_record_change();
CREATE TRIGGER routing_settings_history
    AFTER INSERT OR UPDATE OR DELETE ON routing_settings
    FOR EACH ROW EXECUTE FUNCTION llm_proxy_record_change();
CREATE TRIGGER model_fallbacks_history_truncate
    BEFORE TRUNCATE ON model_fallbacks
    FOR EACH STATEMENT EXECUTE FUNCTION llm_proxy_record_truncate();
CREATE TRIGGER routing_rules_history_truncate
    BEFORE TRUNCATE ON routing_rules
    FOR EACH STATEMENT EXECUTE FUNCTION llm_proxy_record_truncate();
CREATE TRIGGER routing_settings_history_truncate
    BEFORE TRUNCATE ON routing_settings
    FOR EACH STATEMENT EXECUTE FUNCTION llm_proxy_record_truncate();
CREATE TRIGGER model_fallbacks_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON model_fallbacks
    FOR EACH STATEMENT EXECUTE FUNCTION llm_proxy_config_changed();
CREATE TRIGGER routing_rules_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON routing_rules
    FOR EACH STATEMENT EXECUTE FUNCTION llm_proxy_config_changed();
CREATE TRIGGER routing_settings_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON routing_settings
    FOR EACH STATEMENT EXECUTE FUNCTION llm_proxy_config_changed();

-- The rows of `tbl` back to exactly their state at `target` (as migration 010 restores the
-- providers and credentials): rows that differ are replaced whole (same id), rows created since
-- are deleted. The routing tables hold no secret: nothing to restore from config_secrets.
CREATE FUNCTION llm_proxy_restore_rows(tbl text, target bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'CREATE TEMP TABLE llm_proxy_target ON COMMIT DROP AS '
        'SELECT (jsonb_populate_record(NULL::%I, r)).* FROM llm_proxy_state_at(%L, $1) r',
        tbl, tbl) USING target;
    EXECUTE format(
        'DELETE FROM %I t WHERE NOT EXISTS '
        '(SELECT 1 FROM llm_proxy_target g WHERE to_jsonb(g) = to_jsonb(t))', tbl);
    EXECUTE format(
        'INSERT INTO %I OVERRIDING SYSTEM VALUE SELECT g.* FROM llm_proxy_target g '
        'WHERE NOT EXISTS (SELECT 1 FROM %I t WHERE t.id = g.id)', tbl, tbl);
    DROP TABLE llm_proxy_target;
END;
$$;

-- llm_proxy_rollback (migration 010's, kept as llm_proxy_rollback_013) restores the providers
-- and credentials; this one restores the routing tables too, in the same transaction (one
-- version). A version from before this migration has no routing rows: they are all deleted.
ALTER FUNCTION llm_proxy_rollback(bigint, boolean) RENAME TO llm_proxy_rollback_013;

CREATE FUNCTION llm_proxy_rollback(target bigint, restore_revoked_keys boolean) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    current bigint;
    done jsonb;
    tbl text;
BEGIN
    SELECT version INTO current FROM config_version FOR UPDATE;
    done := llm_proxy_rollback_013(target, restore_revoked_keys);
    IF target = current THEN
        RETURN done;
    END IF;
    FOREACH tbl IN ARRAY ARRAY['model_fallbacks', 'routing_rules', 'routing_settings'] LOOP
        PERFORM llm_proxy_restore_rows(tbl, target);
    END LOOP;
    SELECT version INTO current FROM config_version;
    RETURN jsonb_set(done, '{version}', to_jsonb(current));
END;
$$;

-- The request log: a request a fallback model answered names the model asked for and why it
-- fell back (any, context_window, content_policy); a request a routing rule matched, the rule.
-- The index serves `GET /admin/v1/logs/requests?fallback=true`.
ALTER TABLE request_logs ADD COLUMN fallback_from text;
ALTER TABLE request_logs ADD COLUMN fallback_reason text;
ALTER TABLE request_logs ADD COLUMN rule text;
CREATE INDEX request_logs_fallback ON request_logs (ts) WHERE fallback_from IS NOT NULL;
