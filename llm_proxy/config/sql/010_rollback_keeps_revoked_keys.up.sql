-- A rollback no longer revives master keys revoked since the version it goes back to (a key
-- rotated because it leaked must not come back): a key rotated since keeps today's key (the
-- row's other columns go back), a key deleted since stays deleted, unless the caller asks for
-- them explicitly. A key counts as revoked when no row holds its hash today; rotated when
-- today's row of the same id (or, re-created, of the same name) holds another one.
--
-- llm_proxy_rollback(target, restore_revoked_keys) answers
-- {"version": N, "keys_left_out": [{"name": ..., "reason": "rotated" | "deleted"}, ...]};
-- llm_proxy_rollback(target) keeps them revoked and answers the version, as before.

CREATE FUNCTION llm_proxy_rollback(target bigint, restore_revoked_keys boolean) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    current bigint;
    first bigint;
    tbl text;
    missing bigint;
    left_out jsonb := '[]'::jsonb;
BEGIN
    SELECT version INTO current FROM config_version FOR UPDATE;
    SELECT version INTO first FROM config_history_start;
    IF target < first OR target > current THEN
        RAISE EXCEPTION 'config version % is not in the history (it holds versions % to %)',
            target, first, current USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF target = current THEN
        RETURN jsonb_build_object('version', current, 'keys_left_out', left_out);
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
        IF tbl = 'credentials' AND NOT restore_revoked_keys THEN
            CREATE TEMP TABLE llm_proxy_left_out ON COMMIT DROP AS
            SELECT g.id, g.name, now.key_hash, now.key_prefix
            FROM llm_proxy_target g
            LEFT JOIN LATERAL (
                SELECT c.key_hash, c.key_prefix FROM credentials c
                WHERE c.id = g.id OR c.name = g.name
                ORDER BY c.id = g.id DESC LIMIT 1
            ) now ON true
            WHERE NOT EXISTS (SELECT 1 FROM credentials c WHERE c.key_hash = g.key_hash);
            UPDATE llm_proxy_target g SET key_hash = l.key_hash, key_prefix = l.key_prefix
            FROM llm_proxy_left_out l WHERE l.id = g.id AND l.key_hash IS NOT NULL;
            DELETE FROM llm_proxy_target g
            USING llm_proxy_left_out l WHERE l.id = g.id AND l.key_hash IS NULL;
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'name', name,
                       'reason', CASE WHEN key_hash IS NULL THEN 'deleted' ELSE 'rotated' END)
                   ORDER BY name), '[]'::jsonb)
            INTO left_out FROM llm_proxy_left_out;
            DROP TABLE llm_proxy_left_out;
        END IF;
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
    RETURN jsonb_build_object('version', current, 'keys_left_out', left_out);
END;
$$;

CREATE OR REPLACE FUNCTION llm_proxy_rollback(target bigint) RETURNS bigint
LANGUAGE sql AS $$
    SELECT (llm_proxy_rollback(target, false)->>'version')::bigint
$$;
