"""Level-runs: planning and evaluating them, the env program, results, provenance, curves and replays;
runtimes only launch.
"""
