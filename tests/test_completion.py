"""Shell completion for `tqhpc` (click's own): the script bash sources, and completions through click's protocol
(COMP_WORDS and COMP_CWORD in the environment) and through bash itself running that script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TQHPC = [sys.executable, "-m", "tqhpc"]


def _run(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(TQHPC, capture_output=True, text=True, timeout=30, env={**os.environ, **env}, check=False)


def _complete(words: str, cword: int) -> list[str]:
    """What click answers bash for the command line `words`, the word at `cword` being completed."""
    done = _run({"_TQHPC_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)})
    assert done.returncode == 0, done.stderr
    return [line.split(",", 1)[1] for line in done.stdout.splitlines()]


def test_the_bash_completion_script_is_printed() -> None:
    done = _run({"_TQHPC_COMPLETE": "bash_source"})
    assert done.returncode == 0, done.stderr
    assert "_tqhpc_completion()" in done.stdout
    assert "complete -o nosort -F _tqhpc_completion tqhpc" in done.stdout
    for shell in ("zsh", "fish"):
        other = _run({"_TQHPC_COMPLETE": f"{shell}_source"})
        assert other.returncode == 0 and "_TQHPC_COMPLETE" in other.stdout, other.stderr


def test_commands_and_options_complete() -> None:
    assert _complete("tqhpc wo", 1) == ["worker", "workers"]
    assert _complete("tqhpc to", 1) == ["top"]
    assert set(_complete("tqhpc workers ", 2)) >= {"create", "delete", "set"}
    assert _complete("tqhpc top --na", 2) == ["--name"]
    assert _complete("tqhpc tasks --status fa", 3) == ["failed"]
    assert _complete("tqhpc tasks --status running,p", 3) == ["running,pending"]
    assert len(_complete("tqhpc tasks --status ", 3)) == 8


def test_bash_itself_completes_through_the_script(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash on this machine")
    # What bash does at a TAB: the completion function, with COMP_WORDS and COMP_CWORD set.
    command = " ".join(TQHPC)
    script = 'eval "$(_TQHPC_COMPLETE=bash_source tqhpc)"\n'
    for words in ("tqhpc wo", "tqhpc tasks --status fa"):
        script += f"COMPREPLY=(); COMP_WORDS=({words}); COMP_CWORD={len(words.split()) - 1}\n"
        script += '_tqhpc_completion tqhpc; echo "${COMPREPLY[@]}"\n'
    # `tqhpc` on the PATH as a person has it: a small wrapper running this checkout's tqhpc.
    wrapper = tmp_path / "bin" / "tqhpc"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{wrapper.parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        [bash, "--norc", "-c", script], capture_output=True, text=True, timeout=30, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["worker workers", "failed"]
