"""Nimbus: a self-hosted coding-agent service."""
