"""Runtimes: how the env and agent halves of an evaluation are launched."""
