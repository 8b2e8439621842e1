"""Who may do what, and how much: logins, sessions and tokens, throttling, request limits, registry
tokens, safe downloads.
"""
