"""The multi-seed study: many runs, paired statistics, on local processes or Ray."""
