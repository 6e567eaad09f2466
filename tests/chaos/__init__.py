"""Chaos suite: real processes killed with SIGKILL, a database stopped under a running validator."""
