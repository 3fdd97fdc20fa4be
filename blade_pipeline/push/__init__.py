"""Push ingestion: the ingest API (JWT-authenticated batches) on a durable log (NATS JetStream)."""
