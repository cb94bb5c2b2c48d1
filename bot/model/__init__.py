"""Talking to language models: OpenAI-compatible chat completions and Anthropic's Messages API."""
