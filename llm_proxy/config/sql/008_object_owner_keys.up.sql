-- Which master key created each object (llm_proxy.proxy.owners): a key sees only the objects
-- it created (unless it is marked `shared_objects`). NULL: created while authentication was
-- off, or before this migration; such objects are visible to shared keys only.
-- `models`: for a batch input file uploaded through the proxy, the models its lines name (a
-- batch on it is checked against the key's allowed_models); NULL when unknown.
-- `charged_at`: when a batch's usage was charged to its key's budget (charged once, whichever
-- instance sees it complete first).
ALTER TABLE object_owners
    ADD COLUMN key_name   text,
    ADD COLUMN models     text[],
    ADD COLUMN charged_at timestamptz;
