"""Slurm specifics (issue 4): pool profiles, the worker job script, and the sbatch/scancel/squeue commands."""
