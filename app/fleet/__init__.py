"""Fleet monitoring: MQTT ingest, registry, SQLite history, live view and HTML report."""
