"""Locks: a second holder is refused with the first one's pid and host; a killed holder's
lock file is left behind but free."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from codec_bridge.lock import LockedError, acquire, holder


def test_second_holder_is_refused_naming_the_first(tmp_path):
    path = tmp_path / "x.lock"
    assert holder(path) is None
    with acquire(path, "thing X"):
        who = holder(path)
        assert who.startswith(f"pid {os.getpid()} on host {socket.gethostname()} since ")
        with pytest.raises(LockedError) as e:
            acquire(path, "thing X")
        assert str(e.value).startswith(f"thing X is in use by {who} (lock file {path})")
        assert "\n" not in str(e.value)
    assert holder(path) is None
    acquire(path, "thing X").release()


def test_a_killed_holder_leaves_a_free_lock(tmp_path):
    path = tmp_path / "x.lock"
    script = (
        "import sys, time; from codec_bridge.lock import acquire; "
        f"acquire({str(path)!r}, 'x'); print('held', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    assert f"pid {proc.pid} " in holder(path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert path.exists() and f'"pid": {proc.pid}' in path.read_text()  # stale contents ...
    assert holder(path) is None  # ... but nobody holds it
    acquire(path, "x").release()
