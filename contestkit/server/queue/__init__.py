"""Jobs: the queue in the database, scheduling levels onto executors, seeds, run limits and team
operations.
"""
