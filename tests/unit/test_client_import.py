"""`logstream.client` is a light library: importing it pulls in neither the settings stack
(pydantic, pydantic-settings) nor the supervisor."""

from __future__ import annotations

import json
import subprocess
import sys


def test_importing_the_client_leaves_out_config_and_supervisor() -> None:
    code = ("import json, sys; import logstream.client; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pydantic', 'pydantic_settings', 'pydantic_core') or m.startswith(('logstream.supervisor', "
            "'logstream.config', 'logstream.cluster')))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
