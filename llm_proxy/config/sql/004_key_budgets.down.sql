-- Drops the budgets. config_history keeps them in its jsonb rows; a rollback ignores them.
ALTER TABLE credentials
    DROP COLUMN budget_period,
    DROP COLUMN max_budget_usd;
