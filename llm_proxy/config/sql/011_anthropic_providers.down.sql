-- Back to openai and azure providers. Refused while an anthropic provider exists (delete it
-- or change its provider_type first).

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM providers WHERE provider_type = 'anthropic') THEN
        RAISE EXCEPTION 'providers with provider_type anthropic exist: remove them first'
            USING ERRCODE = 'object_in_use';
    END IF;
END;
$$;
ALTER TABLE providers DROP CONSTRAINT providers_provider_type_check;
ALTER TABLE providers ADD CONSTRAINT providers_provider_type_check
    CHECK (provider_type IN ('openai', 'azure'));
