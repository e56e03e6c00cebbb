"""The loaded scenario: one competing busy process for the whole run, as on a machine shared with
other work, so that the results say what a user gets there.

The process is a separate Python interpreter spinning on integer arithmetic: one thread, one core's
worth of demand, nothing shared with the measured process (no environment, no thread settings). It
ends with the context, on an error, Ctrl-C or SIGTERM of the runner alike, and on its own once the
runner is gone (even after a SIGKILL, which runs no cleanup).
"""

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass

# Checks about every few milliseconds whether the runner that started it (its pid, argv[1]) still is
# its parent; ignores Ctrl-C, which a terminal sends to both: the runner ends it.
_SPIN = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
runner, x = int(sys.argv[1]), 1
while os.getppid() == runner:
    for _ in range(20000):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
"""


@dataclass
class Load:
    pid: int
    before: tuple[float, float, float]  # the machine's load averages (1, 5, 15 min) before it started
    after: tuple[float, float, float] | None = None  # and as it stopped


def averages(values) -> str:
    return "/".join(f"{v:.2f}" for v in values)


@contextlib.contextmanager
def busy():
    """Runs the busy process for the duration of the context; yields its Load."""
    before = os.getloadavg()
    process = subprocess.Popen([sys.executable, "-c", _SPIN, str(os.getpid())], stdin=subprocess.DEVNULL)
    load = Load(process.pid, before)
    try:
        yield load
    finally:
        load.after = os.getloadavg()
        process.kill()
        process.wait()
