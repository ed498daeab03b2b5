"""Helpers shared by every tier of tests."""
