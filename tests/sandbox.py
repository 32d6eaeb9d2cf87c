"""Full and read-only filesystems for real commands, in a private mount namespace.

``unshare -rm`` gives a shell its own mounts without privileges, so a test can mount a tiny
tmpfs (a disk that fills up) or remount a folder read-only (which root, unlike chmod, cannot
write either) and run the CLI on it. Tests skip where user namespaces are disabled.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import pytest

PYTHON = sys.executable


def run(script: str, timeout: float = 300, env: dict[str, str] | None = None) -> str:
    """Output (stdout and stderr) of ``sh -c script`` inside a new mount namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("user namespaces are disabled here (unshare -rm fails)")
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"set -e\n{script}"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def tmpfs(path, size: str) -> str:
    """Shell lines that mount an empty ``size`` tmpfs (e.g. '64k') at ``path``."""
    return f"mkdir -p {path}\nmount -t tmpfs -o size={size} tmpfs {path}\n"


def read_only(path) -> str:
    """Shell lines that make the existing folder ``path`` read-only, even for root."""
    return f"mount --bind {path} {path}\nmount -o remount,bind,ro {path}\n"


def command(argv: list[str]) -> str:
    """A shell line running `argv` that prints ``rc=N`` and then its stderr, without the
    '#' banner lines of an untrained codec."""
    run = f"e=$(mktemp); rc=0; {shlex.join(argv)} 2>$e || rc=$?; echo rc=$rc"
    return f"{run}; grep -v '^#' $e || true; rm $e\n"
