-- The rows of a key that were in several teams in one day merged back into one.
DROP INDEX IF EXISTS usage_daily_team_day;
ALTER TABLE usage_daily DROP CONSTRAINT usage_daily_pkey;
CREATE TEMPORARY TABLE usage_daily_merged ON COMMIT DROP AS
    SELECT day, key_name, model, provider, sum(requests) AS requests, sum(errors) AS errors,
           sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
           sum(cost_usd) AS cost_usd
    FROM usage_daily GROUP BY day, key_name, model, provider;
DELETE FROM usage_daily;
ALTER TABLE usage_daily DROP COLUMN team;
INSERT INTO usage_daily
    (day, key_name, model, provider, requests, errors, prompt_tokens, completion_tokens,
     cost_usd)
    SELECT * FROM usage_daily_merged;
ALTER TABLE usage_daily ADD PRIMARY KEY (day, key_name, model, provider);

DROP INDEX IF EXISTS request_logs_team_ts;
ALTER TABLE request_logs DROP COLUMN team;
