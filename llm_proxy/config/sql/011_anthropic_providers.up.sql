-- Providers whose upstream speaks Anthropic's Messages API: provider_type 'anthropic' joins
-- 'openai' and 'azure'. Its settings (anthropic_version, default_max_tokens,
-- max_output_tokens; auth x-api-key) live in `params`, validated by the proxy like the YAML
-- keys, and none is a secret: the config history shows them as they are. api_base stays
-- NOT NULL: the admin API writes Anthropic's own (https://api.anthropic.com) when a body
-- gives none; a psql INSERT spells it.

ALTER TABLE providers DROP CONSTRAINT providers_provider_type_check;
ALTER TABLE providers ADD CONSTRAINT providers_provider_type_check
    CHECK (provider_type IN ('openai', 'azure', 'anthropic'));
