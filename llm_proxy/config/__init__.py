"""The config plane: the configuration model and its validation, the YAML file, the database
(rows, migrations, LISTEN/NOTIFY)."""
