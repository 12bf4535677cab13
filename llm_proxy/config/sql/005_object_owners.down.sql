DROP TABLE object_owners;
