"""Fake external services for tests: real HTTP servers on loopback."""
