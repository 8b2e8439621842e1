"""The contest's environment as the 2018 server built it: games and levels, the env, its seeds, monitor
files, scoring and ROMs.
"""
