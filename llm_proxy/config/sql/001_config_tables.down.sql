-- Drops every configuration table: providers and credentials are lost.
DROP TABLE IF EXISTS credentials, providers, config_version;
DROP FUNCTION IF EXISTS llm_proxy_config_changed();
DROP FUNCTION IF EXISTS llm_proxy_hash_credential_key();
DROP FUNCTION IF EXISTS llm_proxy_touch();
