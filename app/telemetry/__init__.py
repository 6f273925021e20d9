"""MQTT telemetry: topics, schemas, store-and-forward spool, client, commands, discovery, brokers."""
