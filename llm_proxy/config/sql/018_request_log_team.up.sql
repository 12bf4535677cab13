-- The team of each request's key (issue 32, `teams:`), as it was when the request was made:
-- a request log row says whose spend it was, and a team's spend is summed without asking the
-- config which keys are in it now (a key may change teams).
-- * request_logs.team: the team's name, NULL for a key in no team (and for rows written
--   before). The index serves `GET /admin/v1/logs/requests?team=` and the sum of a team's
--   spend today when a proxy without Redis restores its budgets at startup.
-- * usage_daily.team: the same, '' for no team (a primary key's column cannot be NULL); part
--   of the primary key, since a key moved to another team mid-day sums in two rows. The index
--   serves `GET /admin/v1/usage?team=` and the restore of a team's spend on whole days (not
--   partial: `team = $1` of a generic plan proves no `team <> ''`).

ALTER TABLE request_logs ADD COLUMN team text;
CREATE INDEX request_logs_team_ts ON request_logs (team, ts) WHERE team IS NOT NULL;

ALTER TABLE usage_daily ADD COLUMN team text NOT NULL DEFAULT '';
ALTER TABLE usage_daily
    DROP CONSTRAINT usage_daily_pkey,
    ADD PRIMARY KEY (day, key_name, team, model, provider);
CREATE INDEX usage_daily_team_day ON usage_daily (team, day);
