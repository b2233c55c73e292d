"""Composition root: jobs, schedules, partitions and the one Definitions object."""
