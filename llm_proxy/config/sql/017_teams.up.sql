-- Teams in database mode (issue 32): the YAML's `teams:` section as rows of `teams`, and each
-- master key's team as `credentials.team`. A team holds what its keys share: allowed models, a
-- request rate, tokens per minute, a cost budget, parallel requests (each optional, checked as
-- the keys' own columns are), whether its keys see each other's stored objects, and metadata.
-- The proxy reads the rows into the YAML's shape and validates them with the same code (a key
-- whose allowed_models are not within its team's: the reload is refused, naming the row).
--
-- * credentials.team references teams(name): renaming a team carries its keys along (ON UPDATE
--   CASCADE); deleting a team that still has keys is refused (ON DELETE RESTRICT): move or
--   delete its keys first.
-- * Teams are config: recorded in config_history, rolled back with providers, keys and routing
--   in one transaction, and announced (version bump + NOTIFY), as migration 014's tables.
--   config_history rows of credentials recorded before this migration lack `team`: a rollback
--   restores them with NULL, which is what they were.

CREATE TABLE teams (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                    text NOT NULL UNIQUE
                            CHECK (name ~ '^[^[:cntrl:]]{1,128}$'),
    allowed_models          text[],
    rate_limit_rps          double precision CHECK (rate_limit_rps > 0),
    rate_limit_burst        integer,
    tokens_per_minute       integer CHECK (tokens_per_minute > 0),
    max_budget_usd          double precision
                            CHECK (max_budget_usd > 0 AND max_budget_usd <= 1e9),
    budget_period           text,
    max_parallel_requests   integer CHECK (max_parallel_requests > 0),
    shared_objects          boolean NOT NULL DEFAULT false,
    metadata                jsonb NOT NULL DEFAULT '{}'
                            CHECK (jsonb_typeof(metadata) = 'object'
                                   AND octet_length(metadata::text) <= 16384),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    -- (named after their column, so that the admin API's error names the field)
    CONSTRAINT teams_rate_limit_burst_check CHECK (
        rate_limit_burst IS NULL OR (rate_limit_burst > 0 AND rate_limit_rps IS NOT NULL)
    ),
    CONSTRAINT teams_budget_period_check CHECK (
        budget_period IS NULL
        OR (budget_period IN ('daily', 'monthly') AND max_budget_usd IS NOT NULL)
    )
);

CREATE TRIGGER teams_touch
    BEFORE UPDATE ON teams
    FOR EACH ROW EXECUTE FUNCTION llm_proxy_touch();

ALTER TABLE credentials
    ADD COLUMN team text REFERENCES teams (name) ON UPDATE CASCADE ON DELETE RESTRICT;
CREATE INDEX credentials_team ON credentials (team) WHERE team IS NOT NULL;

-- History, rollback and NOTIFY, as for the other config tables.
ALTER TABLE config_history DROP CONSTRAINT config_history_table_name_check;
ALTER TABLE config_history ADD CONSTRAINT config_history_table_name_check CHECK (
    table_name IN ('providers', 'credentials', 'model_fallbacks', 'routing_rules',
                   'routing_settings', 'teams'));

CREATE TRIGGER teams_history
    AFTER INSERT OR UPDATE OR DELETE ON teams
    FOR EACH ROW EXECUTE FUNCTION llm_proxy_record_change();
CREATE TRIGGER teams_history_truncate
    BEFORE TRUNCATE ON teams
    FOR EACH STATEMENT EXECUTE FUNCTION llm_proxy_record_truncate();
CREATE TRIGGER teams_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON teams
    FOR EACH STATEMENT EXECUTE FUNCTION llm_proxy_config_changed();

-- The teams a rollback to `target` needs before the keys are restored: every team of that
-- version present with its values of then, updated in place (a team that keys still reference
-- cannot be deleted and inserted again, as the other tables' rows are). A row whose name a
-- row of the target takes is renamed out of the way first (its keys follow it, and are
-- restored next); the teams of no key of the target are deleted after the keys
-- (`llm_proxy_drop_teams_since`).
CREATE FUNCTION llm_proxy_restore_teams(target bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    columns text;
BEGIN
    CREATE TEMP TABLE llm_proxy_target_teams ON COMMIT DROP AS
    SELECT (jsonb_populate_record(NULL::teams, r)).* FROM llm_proxy_state_at('teams', target) r;
    UPDATE teams t SET name = left('rollback ' || t.id || ' ' || md5(random()::text), 128)
    WHERE t.name IN (SELECT g.name FROM llm_proxy_target_teams g WHERE g.id <> t.id);
    SELECT string_agg(format('%I', attname), ', ' ORDER BY attnum) INTO columns
    FROM pg_attribute
    WHERE attrelid = 'teams'::regclass AND attnum > 0 AND NOT attisdropped AND attname <> 'id';
    EXECUTE format(
        'UPDATE teams t SET (%s) = (SELECT %s FROM llm_proxy_target_teams g WHERE g.id = t.id) '
        'WHERE EXISTS (SELECT 1 FROM llm_proxy_target_teams g WHERE g.id = t.id AND '
        '(to_jsonb(g) - ''updated_at'') <> (to_jsonb(t) - ''updated_at''))',
        columns, columns);
    INSERT INTO teams OVERRIDING SYSTEM VALUE SELECT g.* FROM llm_proxy_target_teams g
    WHERE NOT EXISTS (SELECT 1 FROM teams t WHERE t.id = g.id);
    DROP TABLE llm_proxy_target_teams;
END;
$$;

-- After the keys are restored: the teams `target` did not have (no key of it names them).
CREATE FUNCTION llm_proxy_drop_teams_since(target bigint) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM teams t WHERE NOT EXISTS (
        SELECT 1 FROM llm_proxy_state_at('teams', target) r WHERE (r->>'id')::bigint = t.id)
$$;

-- llm_proxy_rollback (migration 014's, kept as llm_proxy_rollback_016) restores providers,
-- keys and routing; this one restores the teams around it, in the same transaction (one
-- version): the target's teams before the keys (which reference them), the others deleted
-- after. A version from before this migration has no teams: they are all deleted.
ALTER FUNCTION llm_proxy_rollback(bigint, boolean) RENAME TO llm_proxy_rollback_016;

CREATE FUNCTION llm_proxy_rollback(target bigint, restore_revoked_keys boolean) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    current bigint;
    first bigint;
    done jsonb;
BEGIN
    SELECT version INTO current FROM config_version FOR UPDATE;
    SELECT version INTO first FROM config_history_start;
    IF target >= first AND target < current THEN
        PERFORM llm_proxy_restore_teams(target);
    END IF;
    -- (refuses a version outside the history, undoing the above with the transaction)
    done := llm_proxy_rollback_016(target, restore_revoked_keys);
    IF target = current THEN
        RETURN done;
    END IF;
    PERFORM llm_proxy_drop_teams_since(target);
    SELECT version INTO current FROM config_version;
    RETURN jsonb_set(done, '{version}', to_jsonb(current));
END;
$$;
