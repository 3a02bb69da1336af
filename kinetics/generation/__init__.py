"""Sampling reasoning traces with dense and sparse attention: backends, problems, runs."""
