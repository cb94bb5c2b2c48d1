"""The phase machine and a module for each phase that does work."""
