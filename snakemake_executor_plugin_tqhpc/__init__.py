"""Snakemake executor plugin for tqhpc: `snakemake --executor tqhpc` runs each job as a tqhpc task.

Snakemake finds executor plugins by their module name (`snakemake_executor_plugin_<name>`) and reads three things
from the module: `ExecutorSettings` (the `--tqhpc-*` options), `common_settings` (how Snakemake builds the
command of each job) and `Executor`.
"""

from snakemake_interface_executor_plugins.settings import CommonSettings

from .executor import Executor
from .settings import ExecutorSettings

common_settings = CommonSettings(
    # Jobs run elsewhere (on tqhpc's workers), each as a Snakemake process of its own for that one job.
    non_local_exec=True,
    # Workers see the workflow's directory: tasks run in the directory they are submitted from, as under Slurm.
    implies_no_shared_fs=False,
    job_deploy_sources=False,
    pass_default_storage_provider_args=True,
    pass_default_resources_args=True,
    # A task has no environment of its own to carry variables in: `--envvars` go into the job's command.
    pass_envvar_declarations_to_cmd=True,
    auto_deploy_default_storage_provider=False,
)

__all__ = ["Executor", "ExecutorSettings", "common_settings"]
