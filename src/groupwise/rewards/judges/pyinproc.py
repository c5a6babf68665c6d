"""The in-process fallback for Python tests that need real objects: solution and one test in one process.

Shipped as ``pyinproc.py`` into the sandbox and run as ``pyinproc.py`` with ``solution.py`` and ``test.py``
beside it and a random token on stdin. The verdict is the line ``TOKEN pass`` (or ``TOKEN fail``) written to a copy
of the original stdout once the test ended; no line (an exit, a crash, a kill) is a failure, not run.

Hardened against: ``sys.exit``/``SystemExit`` (caught, a failure), ``os._exit`` and kills (no verdict line),
``atexit`` hooks and ``sys.excepthook`` (never reached: every exception is caught and the runner leaves with
``os._exit``), ``-O`` (both are compiled with ``optimize=0``, and a re-executed interpreter has lost the token
read from stdin), a flood of output (the solution's stdout is /dev/null, the verdict goes to its own fd).
Not stopped (the solution shares the process): reading the test or the token from frames or memory, patching
modules the test uses, objects that compare equal to anything. Use the default (``harness: separate``)
whenever the tests only exchange plain data.
"""

from __future__ import annotations

import builtins
import os
import sys


def main() -> None:
    sys.set_int_max_str_digits(0)
    token = sys.stdin.readline().strip()
    verdict_fd = os.dup(1)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    ok = False
    try:
        with open("solution.py", "rb") as f:
            solution = compile(f.read(), "solution.py", "exec", dont_inherit=True, optimize=0)
        with open("test.py", "rb") as f:
            test = compile(f.read(), "<test>", "exec", dont_inherit=True, optimize=0)
        namespace = {"__name__": "__main__", "__builtins__": builtins}
        exec(solution, namespace)
        exec(test, namespace)
        ok = True
    except BaseException:  # noqa: BLE001 - any failure, SystemExit included, fails the test
        ok = False
    os.write(verdict_fd, f"{token} {'pass' if ok else 'fail'}\n".encode())
    os._exit(0)


if __name__ == "__main__":
    main()
