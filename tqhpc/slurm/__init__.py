"""Slurm specifics: pool profiles, partitions, the worker job script, and the Slurm commands the server runs."""
