"""End-to-end tests: a real mitmdump process, fake LLM providers on loopback."""
