"""Completion webhooks (SPEC §11): the outbox rows a run's end or pause writes, and the
lifespan-owned sender that delivers them, signed, retried and guarded against SSRF."""
