"""Persistence behind the ``ExecutionStore`` and ``WorkflowStore`` seams: in memory, SQLite,
PostgreSQL.
"""
