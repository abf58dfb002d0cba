"""The worker's engine: checkpoints over Kafka transactions (see ``hub.engine.loop``)."""
