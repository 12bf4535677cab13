-- Configuration for database mode: providers, credentials (master keys) and a version row
-- whose every change is announced on the `llm_proxy_config` channel.

CREATE TABLE providers (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE
                    CHECK (name ~ '^[^[:cntrl:]]{1,128}$'),
    provider_type   text NOT NULL DEFAULT 'openai'
                    CHECK (provider_type IN ('openai')),
    api_base        text NOT NULL
                    CHECK (api_base ~ '^https?://[^[:space:]]+$'),
    api_key         text NOT NULL DEFAULT '',
    model_mapping   jsonb NOT NULL DEFAULT '{}'
                    CHECK (jsonb_typeof(model_mapping) = 'object'),
    weight          integer NOT NULL DEFAULT 1 CHECK (weight > 0),
    is_enabled      boolean NOT NULL DEFAULT true,
    -- Optional per-provider settings: verify_ssl, request_timeout_secs, inject_stream_usage.
    params          jsonb NOT NULL DEFAULT '{}'
                    CHECK (jsonb_typeof(params) = 'object'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE credentials (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text NOT NULL UNIQUE
                        CHECK (name ~ '^[^[:cntrl:]]{1,128}$'),
    -- Write-only: a trigger turns a plaintext key into key_hash/key_prefix and clears it,
    -- so `INSERT INTO credentials (name, key) VALUES ('team-a', 'sk-...')` just works.
    key                 text CHECK (key IS NULL),
    key_hash            bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    key_prefix          text NOT NULL DEFAULT '',
    allowed_models      text[],
    rate_limit_rps      double precision CHECK (rate_limit_rps > 0),
    rate_limit_burst    integer CHECK (rate_limit_burst > 0),
    tokens_per_minute   integer CHECK (tokens_per_minute > 0),
    is_enabled          boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (rate_limit_burst IS NULL OR rate_limit_rps IS NOT NULL)
);

CREATE FUNCTION llm_proxy_hash_credential_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.key IS NOT NULL THEN
        IF length(NEW.key) < 8 THEN
            RAISE EXCEPTION 'credentials.key must be at least 8 characters'
                USING ERRCODE = 'check_violation';
        END IF;
        NEW.key_hash := sha256(convert_to(NEW.key, 'UTF8'));
        NEW.key_prefix := left(NEW.key, 6) || '...';
        NEW.key := NULL;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER credentials_hash_key
    BEFORE INSERT OR UPDATE ON credentials
    FOR EACH ROW EXECUTE FUNCTION llm_proxy_hash_credential_key();

CREATE FUNCTION llm_proxy_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER providers_touch
    BEFORE UPDATE ON providers
    FOR EACH ROW EXECUTE FUNCTION llm_proxy_touch();

CREATE TABLE config_version (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    version     bigint NOT NULL DEFAULT 1,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO config_version DEFAULT VALUES;

-- One bump and one NOTIFY per statement (not per row): a 100-row UPDATE is one change.
CREATE FUNCTION llm_proxy_config_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    UPDATE config_version SET version = version + 1, changed_at = now() RETURNING version INTO v;
    PERFORM pg_notify('llm_proxy_config', v::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER providers_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON providers
    FOR EACH STATEMENT EXECUTE FUNCTION llm_proxy_config_changed();

CREATE TRIGGER credentials_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON credentials
    FOR EACH STATEMENT EXECUTE FUNCTION llm_proxy_config_changed();
