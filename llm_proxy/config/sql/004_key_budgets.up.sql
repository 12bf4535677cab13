-- Per-key cost budgets: at most max_budget_usd (US dollars, by the configured pricing) per
-- UTC day or calendar month; budget_period NULL means monthly. New nullable columns: existing
-- rows keep no budget, and config_history rows recorded before this migration (which lack the
-- columns) restore as NULL, which is what they were.

ALTER TABLE credentials
    -- Also refuses NaN and Infinity (which compare above every number in PostgreSQL); 1e9 is
    -- the configuration's bound for any number.
    ADD COLUMN max_budget_usd double precision
        CHECK (max_budget_usd > 0 AND max_budget_usd <= 1e9),
    ADD COLUMN budget_period text,
    -- A period without a budget limits nothing: refused, as in YAML. (Named after the column,
    -- so that the admin API's error names the field.)
    ADD CONSTRAINT credentials_budget_period_check CHECK (
        budget_period IS NULL
        OR (budget_period IN ('daily', 'monthly') AND max_budget_usd IS NOT NULL)
    );
