-- Back to migration 006's rollback, which restores every key of the version it goes back to.

DROP FUNCTION llm_proxy_rollback(bigint, boolean);

CREATE OR REPLACE FUNCTION llm_proxy_rollback(target bigint) RETURNS bigint
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
    WHERE (r->>'api_key') IS NULL OR r ? 'headers_missing';
    IF missing > 0 THEN
        RAISE EXCEPTION 'config version %: % provider key(s) or headers no longer in config_secrets',
            target, missing USING ERRCODE = 'invalid_parameter_value';
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
