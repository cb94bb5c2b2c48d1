"""Nimbus as a GitHub App: webhooks in, comments, checks and pull requests out (DESIGN §6)."""
