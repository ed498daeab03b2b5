"""Push transports: thin adapters moving bytes between sockets and the push core."""
