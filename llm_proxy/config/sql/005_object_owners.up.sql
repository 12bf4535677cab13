-- Which provider owns which object (files, batches, vector stores, responses), so that every
-- instance sends a call about an object to the provider account that holds it. Written by the
-- proxy when a provider's answer creates an object; read when an instance meets an id it does
-- not know. Rows older than 30 days (OpenAI keeps a response 30 days) are deleted hourly, in
-- small batches, by the proxy.

CREATE TABLE object_owners (
    id          text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 200),
    provider    text NOT NULL,
    kind        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX object_owners_created_at ON object_owners (created_at);
