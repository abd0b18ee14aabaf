"""Unit tests: no database and no child process (in-process fake servers are fine)."""
