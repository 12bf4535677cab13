-- Request and error logs, and the daily usage rollup the admin API answers /usage from.
--
-- * request_logs: one row per request; error_logs: one row per failed upstream attempt.
--   Both are partitioned by day (UTC), so that retention drops whole partitions instead of
--   deleting rows under long locks. A DEFAULT partition catches rows no daily partition holds
--   (a clock far off); retention deletes from it in small batches.
-- * usage_daily: per day, key, model and provider: requests, errors, tokens and cost. Written
--   in the same transaction as the rows it sums, so it is always their exact total; queries
--   over months read thousands of rows, not millions. Kept when the raw rows expire.
-- * llm_proxy_maintain_logs(retention_days): creates the partitions of the next days and drops
--   the expired ones (each statement waits at most 2 s for its lock, else it is retried at the
--   next run). The proxy runs it at startup and hourly; psql may run it too.

CREATE TABLE request_logs (
    id                  bigserial,
    ts                  timestamptz NOT NULL,
    request_id          text NOT NULL,
    key_name            text NOT NULL,
    client              text NOT NULL,
    method              text NOT NULL,
    path                text NOT NULL,
    model               text,
    model_sent          text,
    provider            text NOT NULL,
    attempts            text[] NOT NULL DEFAULT '{}',
    status              smallint NOT NULL,
    duration_ms         real NOT NULL,
    ttft_ms             real,
    prompt_tokens       integer,
    completion_tokens   integer,
    cost_usd            double precision,
    streamed            boolean NOT NULL DEFAULT false,
    error_code          text,
    prompt              text,
    completion          text,
    PRIMARY KEY (ts, id)
) PARTITION BY RANGE (ts);
CREATE INDEX request_logs_request_id ON request_logs (request_id);
CREATE INDEX request_logs_key_ts ON request_logs (key_name, ts);
CREATE INDEX request_logs_model_ts ON request_logs (model, ts);
CREATE INDEX request_logs_provider_ts ON request_logs (provider, ts);
CREATE INDEX request_logs_status_ts ON request_logs (status, ts) WHERE status >= 400;
CREATE TABLE request_logs_default PARTITION OF request_logs DEFAULT;

CREATE TABLE error_logs (
    id                  bigserial,
    ts                  timestamptz NOT NULL,
    request_id          text NOT NULL,
    provider            text NOT NULL,
    outcome             text NOT NULL,
    upstream_status     smallint,
    body                text,
    detail              text,
    PRIMARY KEY (ts, id)
) PARTITION BY RANGE (ts);
CREATE INDEX error_logs_request_id ON error_logs (request_id);
CREATE INDEX error_logs_provider_ts ON error_logs (provider, ts);
CREATE TABLE error_logs_default PARTITION OF error_logs DEFAULT;

CREATE TABLE usage_daily (
    day                 date NOT NULL,
    key_name            text NOT NULL,
    model               text NOT NULL,  -- '' for requests no route matched
    provider            text NOT NULL,
    requests            bigint NOT NULL DEFAULT 0,
    errors              bigint NOT NULL DEFAULT 0,  -- answered with a status >= 400
    prompt_tokens       bigint NOT NULL DEFAULT 0,
    completion_tokens   bigint NOT NULL DEFAULT 0,
    cost_usd            double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (day, key_name, model, provider)
);
CREATE INDEX usage_daily_key_day ON usage_daily (key_name, day);

-- The partition of one table for one UTC day, created unless it exists. If the DEFAULT
-- partition already holds rows of that day, the day stays there (creating the partition
-- would fail), and retention's batched deletes expire them.
CREATE FUNCTION llm_proxy_log_partition(parent text, day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := format('%s_p%s', parent, to_char(day, 'YYYYMMDD'));
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
        part, parent,
        (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
    RETURN true;
EXCEPTION
    WHEN check_violation OR lock_not_available OR duplicate_table THEN
        RETURN false;
END
$$;

CREATE FUNCTION llm_proxy_maintain_logs(retention_days integer, ahead_days integer DEFAULT 2)
RETURNS TABLE (action text, partition_name text)
LANGUAGE plpgsql AS $$
DECLARE
    parent text;
    today date := (now() AT TIME ZONE 'UTC')::date;
    cutoff timestamptz;
    part record;
    deleted integer;
BEGIN
    PERFORM set_config('lock_timeout', '2s', true);
    FOREACH parent IN ARRAY ARRAY['request_logs', 'error_logs'] LOOP
        FOR d IN 0..ahead_days LOOP
            IF llm_proxy_log_partition(parent, today + d) THEN
                action := 'created'; partition_name := format('%s_p%s', parent,
                    to_char(today + d, 'YYYYMMDD'));
                RETURN NEXT;
            END IF;
        END LOOP;
        CONTINUE WHEN retention_days IS NULL OR retention_days <= 0;
        cutoff := (today - retention_days)::timestamp AT TIME ZONE 'UTC';
        FOR part IN
            SELECT c.relname
            FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = parent::regclass
              AND c.relname ~ ('^' || parent || '_p[0-9]{8}$')
              AND to_date(right(c.relname, 8), 'YYYYMMDD') + 1
                  <= (cutoff AT TIME ZONE 'UTC')::date
        LOOP
            BEGIN
                EXECUTE format('DROP TABLE %I', part.relname);
                action := 'dropped'; partition_name := part.relname;
                RETURN NEXT;
            EXCEPTION WHEN lock_not_available THEN
                action := 'busy'; partition_name := part.relname;
                RETURN NEXT;
            END;
        END LOOP;
        -- Expired rows in the DEFAULT partition, 5,000 at a time (short row locks only).
        LOOP
            EXECUTE format(
                'DELETE FROM %I WHERE ctid = ANY (ARRAY(SELECT ctid FROM %I WHERE ts < $1 LIMIT 5000))',
                parent || '_default', parent || '_default')
            USING cutoff;
            GET DIAGNOSTICS deleted = ROW_COUNT;
            EXIT WHEN deleted = 0;
            action := 'deleted'; partition_name := parent || '_default';
            RETURN NEXT;
        END LOOP;
    END LOOP;
END
$$;
