"""The ``ExecutionQueue`` seam: the embedded asyncio queue and the Redis Streams queue."""
