"""Benchmarks: one command each, figures printed side by side with a baseline."""
