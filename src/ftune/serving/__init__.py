"""``ftune serve``: an OpenAI-compatible server for finished runs, many adapters on one base."""
