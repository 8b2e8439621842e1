"""Agent projects: contestkit.yaml, where each setting comes from, scaffolding and local agent
dependencies.
"""
