"""The data the layers share: execution statuses and records."""
