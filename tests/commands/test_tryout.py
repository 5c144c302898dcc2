"""`scaler try` as a newcomer runs it: a coherent story, whole output, nothing on stderr."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from scaler.commands.tryout import PHASES


def _run_try() -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    return subprocess.run(
        [sys.executable, "-c", "from scaler.commands.cli import main; raise SystemExit(main(["
         "'try']))"], capture_output=True, text=True, timeout=120, env=env, check=False)


def test_try_tells_a_coherent_story_with_whole_output_and_a_quiet_stderr():
    run = _run_try()
    assert run.returncode == 0, run.stderr
    # No gRPC C-core line (e.g. "chttp2_transport.cc ... Got goaway"), no warning, nothing.
    assert run.stderr == ""

    asked = [int(n) for n in re.findall(r"HPA asks for (\d+) replica", run.stdout)]
    labels = [label for label, *_ in PHASES]
    assert labels == ["idle", "busy", "overloaded", "idle again"] and len(asked) == 4
    idle, busy, overloaded, idle_again = asked
    assert overloaded > busy, run.stdout
    assert idle_again < busy and idle_again < overloaded, run.stdout
    assert idle <= busy

    # The metrics-api answer is printed whole: the JSON after its heading parses.
    body = run.stdout.split("metrics-api JSON (200):\n", 1)[1]
    answer = json.loads(body)
    assert answer["desiredReplicas"] == idle_again and "signals" in answer
