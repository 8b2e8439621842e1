"""A random agent: the smallest complete contest agent, to start from.

It shows the whole contract and nothing else: connect to the env at ``tmp/sock``, play, and end
cleanly when the budget runs out. Replace the action choice in ``agent.main.choose`` with your own.
"""
