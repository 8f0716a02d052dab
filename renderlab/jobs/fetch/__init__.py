"""The fetch image: bring a song project's assets onto the share at an exact change, verified.

`python -m renderlab.jobs.fetch --source SRC --dest DIR` (see __main__ for the contract and exit codes).
"""
