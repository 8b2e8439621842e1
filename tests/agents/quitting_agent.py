"""Exits cleanly without ever opening the bridge (a forgotten main() call, say)."""

print("bye", flush=True)
