"""The ``EventBus`` seam: the in-process bus and the Redis pub/sub relay."""
