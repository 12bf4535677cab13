ALTER TABLE object_owners
    DROP COLUMN charged_at,
    DROP COLUMN models,
    DROP COLUMN key_name;
