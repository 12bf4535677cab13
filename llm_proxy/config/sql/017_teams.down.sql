-- Back to keys without teams: the keys leave their teams, the teams and their history go (a
-- rollback cannot reach them any more), and so does `team` from the keys' history rows (else,
-- migrated up again, a rollback would restore a key into a team the history no longer has).

DROP FUNCTION llm_proxy_rollback(bigint, boolean);
ALTER FUNCTION llm_proxy_rollback_016(bigint, boolean) RENAME TO llm_proxy_rollback;
DROP FUNCTION llm_proxy_drop_teams_since(bigint);
DROP FUNCTION llm_proxy_restore_teams(bigint);

ALTER TABLE credentials DROP COLUMN team;
DROP TABLE teams;

DELETE FROM config_history WHERE table_name = 'teams';
UPDATE config_history SET before = before - 'team', after = after - 'team'
WHERE table_name = 'credentials' AND (before ? 'team' OR after ? 'team');
ALTER TABLE config_history DROP CONSTRAINT config_history_table_name_check;
ALTER TABLE config_history ADD CONSTRAINT config_history_table_name_check CHECK (
    table_name IN ('providers', 'credentials', 'model_fallbacks', 'routing_rules',
                   'routing_settings'));
