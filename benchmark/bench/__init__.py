"""The bench: time and memory of both sides, measured in subprocesses."""
