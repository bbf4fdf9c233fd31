"""Orpheus: a job-execution simulator for a real, unmodified OAR server."""
