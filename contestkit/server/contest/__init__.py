"""The contest's rules: phases, teams, quotas, leaderboards, the final, baselines and the host's
controls.
"""
