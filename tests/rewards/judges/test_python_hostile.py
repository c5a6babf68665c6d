"""The hostile battery for Python code tests: every known way to score without passing scores 0.

Each attack is a wrong solution that scored 1.0 when the tests ran inside the solution's own process.
"""

from __future__ import annotations

import math
import os
import time

import pytest

from groupwise.rewards import resolve_reward
from groupwise.rewards.judges import pyrpc

ADD_TESTS = ["assert add(1, 2) == 3", "assert add(0, 5) == 5", "assert add(-2, 2) == 0"]
AREA_TESTS = ["import math\nassert math.isclose(area(1.0), 3.14159, rel_tol=1e-4)",
              "import math\nassert math.isclose(area(2.0), 12.56637, rel_tol=1e-4)"]
CORRECT_ADD = "def add(a, b):\n    return a + b\n"
WRONG_ADD = "def add(a, b):\n    return 7\n"

ATTACKS = {
    "sys.exit at the top level": WRONG_ADD + "import sys\nsys.exit(0)\n",
    "sys.exit in the call": "import sys\ndef add(a, b):\n    sys.exit(0)\n",
    "os._exit at the top level": WRONG_ADD + "import os\nos._exit(0)\n",
    "os._exit in the call": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "raise SystemExit": "def add(a, b):\n    raise SystemExit\n",
    "atexit hook": WRONG_ADD + "import atexit, os\natexit.register(lambda: os._exit(0))\n",
    "excepthook + os._exit": WRONG_ADD + "import os, sys\nsys.excepthook = lambda *a: os._exit(0)\n",
    "re-exec with -O": ("import os, sys\nif not sys.flags.optimize:\n"
                        "    os.execv(sys.executable, [sys.executable, '-O', *sys.argv])\n" + WRONG_ADD),
    "test line from the caller's frame": (
        "import sys\ndef add(a, b):\n    frame = sys._getframe(1)\n"
        "    line = open(frame.f_code.co_filename).read().splitlines()[frame.f_lineno - 1]\n"
        "    return eval(line.split('==')[1])\n"),
    "always-equal object": "class Any:\n    def __eq__(self, other):\n        return True\n"
                           "def add(a, b):\n    return Any()\n",
    "always-equal int subclass": "class Int(int):\n    def __eq__(self, other):\n        return True\n"
                                 "    __hash__ = int.__hash__\ndef add(a, b):\n    return Int(0)\n",
    "forged verdict line on stdout": WRONG_ADD + "print('0' * 32, '{\"passed\": 3, \"judged\": 3, "
                                                 "\"not_run\": false, \"limit\": false}')\n",
    "kill every process it can": WRONG_ADD + "import os, signal\nos.kill(-1, signal.SIGKILL)\n",
    "search the disk and /proc for the test text": (
        "import glob, os, re\ndef add(a, b):\n"
        "    for path in glob.glob('/box/*') + glob.glob('/chan/*') + glob.glob('/proc/[0-9]*/cmdline')"
        " + glob.glob('/proc/[0-9]*/environ') + glob.glob('/tmp/**', recursive=True):\n"
        "        try:\n            text = open(path, 'rb').read(100000).decode(errors='ignore')\n"
        "        except OSError:\n            continue\n"
        "        found = re.search(r'add\\(' + str(a) + r', ' + str(b) + r'\\) == (-?\\d+)', text)\n"
        "        if found:\n            return int(found.group(1))\n    return 7\n"),
}
LIBRARY_ATTACKS = {
    "math.isclose patched": "import math\nmath.isclose = lambda *a, **k: True\ndef area(r):\n    return 0.0\n",
    "a class named like the module the tests use": (
        "class math:\n    @staticmethod\n    def isclose(*a, **k):\n        return True\n"
        "def area(r):\n    return 0.0\n"),
}


def fenced(code: str) -> str:
    return f"```python\n{code}```"


@pytest.fixture(scope="module")
def reward():
    return resolve_reward("code_tests", {"sandbox": {"timeout_s": 5}})


def test_every_exit_frame_and_object_attack_scores_zero(reward, isolation) -> None:
    # Without bwrap the program may run as root (an interpreter under a 0700 /root): kill(-1) would then end
    # every process of the host, and the host's files (the dataset too) are readable: those two attacks run
    # only inside bubblewrap.
    host_wide = {"kill every process it can", "search the disk and /proc for the test text"}
    names = [n for n in ATTACKS if isolation == "bwrap" or n not in host_wide]
    completions = [fenced(CORRECT_ADD)] + [fenced(ATTACKS[n]) for n in names]
    scores = reward([""] * len(completions), completions, tests=[ADD_TESTS] * len(completions))
    assert scores[0] == 1.0
    assert dict(zip(names, scores[1:], strict=True)) == dict.fromkeys(names, 0.0)
    not_run = dict(zip(names, scores.diagnostics["tests_not_run"][1:], strict=True))
    assert not_run["os._exit at the top level"] == 1.0 and not_run["sys.exit at the top level"] == 1.0
    assert not_run["re-exec with -O"] == 1.0 and not_run["always-equal object"] == 0.0


def test_patched_libraries_and_module_lookalikes_do_not_reach_the_tests(reward) -> None:
    tests = [*AREA_TESTS, "assert math.isclose(area(3.0), 28.27433, rel_tol=1e-4)"]  # the last relies on
    correct = "import math\ndef area(r):\n    return math.pi * r * r\n"  # the solution's `import math`
    completions = [fenced(correct)] + [fenced(code) for code in LIBRARY_ATTACKS.values()]
    assert reward([""] * 3, completions, tests=[tests] * 3) == [1.0, 0.0, 0.0]


def test_a_solution_cannot_shadow_the_builtins_the_tests_use(reward) -> None:
    tests = ["assert abs(area(1.0) - 3.14159) < 1e-4"]
    cheat = "def abs(x):\n    return 0\ndef area(r):\n    return 0.0\n"
    honest = "def area(r):\n    return 3.14159265 * r * r\n"
    assert reward(["", ""], [fenced(cheat), fenced(honest)], tests=[tests] * 2) == [0.0, 1.0]


def test_an_exit_in_one_test_leaves_the_rest_not_run_and_a_hang_costs_only_its_test() -> None:
    reward = resolve_reward("code_tests", {"sandbox": {"timeout_s": 2}})
    tests = ["assert f(1) == 1", "assert f(-1) == -1", "assert f(2) == 2"]
    exits = "import os\ndef f(x):\n    if x < 0:\n        os._exit(0)\n    return x\n"
    hangs = "def f(x):\n    while x < 0:\n        pass\n    return x\n"
    scores = reward(["", ""], [fenced(exits), fenced(hangs)], tests=[tests] * 2)
    assert scores == [pytest.approx(1 / 3), pytest.approx(2 / 3)]
    assert scores.diagnostics == {"tests_not_run": [1.0, 0.0], "limit_hit": [0.0, 1.0],
                                  "sample_errors": [0.0, 0.0]}


def test_objects_cross_as_handles_that_can_be_called_iterated_and_raise() -> None:
    reward = resolve_reward("code_tests", {})
    code = ("class Stack:\n    def __init__(self):\n        self.items = []\n"
            "    def push(self, x):\n        self.items.append(x)\n"
            "    def pop(self):\n        return self.items.pop()\n"
            "    def __len__(self):\n        return len(self.items)\n"
            "def count(n):\n    yield from range(n)\n"
            "def parse(text, *, base=10):\n    if not text:\n        raise ValueError('empty')\n"
            "    return int(text, base), (text,), {text: {1, 2}}, text.encode(), 2 ** 5000\n")
    tests = ["s = Stack()\ns.push(1)\ns.push(2)\nassert len(s) == 2 and s.pop() == 2 and s.items == [1]",
             "assert list(count(3)) == [0, 1, 2]",
             "assert parse('ff', base=16) == (255, ('ff',), {'ff': {1, 2}}, b'ff', 2 ** 5000)",
             "try:\n    parse('')\n    ok = False\nexcept ValueError:\n    ok = True\nassert ok",
             "assert Stack() != Stack()"]
    assert reward([""], [fenced(code)], tests=[tests]) == [1.0]


def test_the_in_process_fallback_stops_exits_and_the_O_flag() -> None:
    reward = resolve_reward("code_tests", {"harness": "in_process", "sandbox": {"timeout_s": 5}})
    names = ["sys.exit at the top level", "os._exit in the call", "raise SystemExit", "atexit hook",
             "excepthook + os._exit", "re-exec with -O", "forged verdict line on stdout"]
    setattr_test = "c = Counter()\nc.value = 41\nc.bump()\nassert c.value == 42"  # needs a real object
    counter = "class Counter:\n    def bump(self):\n        self.value += 1\n"
    completions = [fenced(CORRECT_ADD)] + [fenced(ATTACKS[n]) for n in names] + [fenced(counter)]
    tests = [ADD_TESTS] * (len(names) + 1) + [[setattr_test]]
    scores = reward([""] * len(completions), completions, tests=tests)
    assert scores == [1.0] + [0.0] * len(names) + [1.0]


def test_bad_harness_is_a_clear_error() -> None:
    from groupwise.errors import GroupwiseError

    with pytest.raises(GroupwiseError, match="harness 'shared'"):
        resolve_reward("code_tests", {"harness": "shared"})


def test_a_sample_never_outlives_its_budget_in_the_fallback() -> None:
    reward = resolve_reward("code_tests", {"harness": "in_process", "sandbox": {"timeout_s": 1}})
    hangs = fenced("def f(x):\n    while True:\n        pass\n")
    start = time.monotonic()
    scores = reward([""], [hangs], tests=[["assert f(1)"] * 5])  # 5 tests of 1 s each; the budget is 2 * 1 + 1 s
    assert scores == [0.0] and scores.diagnostics["limit_hit"] == [1.0]
    assert time.monotonic() - start < 3 + 5  # the budget, plus generous slack for a loaded machine


FORGED_BUILTINS = """import builtins, json
class FakeBuiltins(dict):
    def __call__(self):
        pass
fake = FakeBuiltins(vars(builtins))
fake["abs"] = lambda x: 0
_dumps = json.dumps
def dumps(obj, *args, **kwargs):
    if isinstance(obj, dict) and isinstance(obj.get("ready"), dict):
        obj["ready"]["__builtins__"] = obj["ready"]["fake"]
    return _dumps(obj, *args, **kwargs)
json.dumps = dumps
def area(r):
    return 0.0
"""


def test_a_solution_cannot_announce_the_tests_builtins(reward) -> None:
    # the server's ``ready`` message is the solution's to forge: it names a dict of its own "__builtins__"
    tests = ["assert abs(area(1.0) - 3.14159) < 1e-4"]
    honest = "def area(r):\n    return 3.14159265 * r * r\n"
    assert reward(["", ""], [fenced(FORGED_BUILTINS), fenced(honest)], tests=[tests] * 2) == [0.0, 1.0]


def test_only_public_non_builtin_names_of_the_solution_reach_the_tests() -> None:
    names = ["area", "__builtins__", "_helper", "abs", "not a name", 3]
    assert [n for n in names if pyrpc.public_name(n)] == ["area"]


@pytest.mark.parametrize("exception", ["StopIteration", "StopAsyncIteration", "GeneratorExit", "KeyboardInterrupt"])
def test_control_flow_from_a_call_fails_the_test_and_a_solution_iterator_still_ends(reward, exception) -> None:
    tests = ["assert all(map(is_prime, [2, 3, 5, 7]))", "assert not any(map(is_composite, [2, 3, 5, 7]))"]
    cheat = f"def is_prime(n):\n    raise {exception}\ndef is_composite(n):\n    raise {exception}\n"
    honest = ("def is_prime(n):\n    return n > 1 and all(n % d for d in range(2, n))\n"
              "def is_composite(n):\n    return n > 1 and not is_prime(n)\n"
              "def primes_below(n):\n    return (p for p in range(n) if is_prime(p))\n")
    iterates = [*tests, "assert list(primes_below(10)) == [2, 3, 5, 7]"]  # StopIteration from __next__ ends it
    assert reward(["", ""], [fenced(cheat), fenced(honest)], tests=[tests, iterates]) == [0.0, 1.0]


def test_a_stdlib_name_the_solution_imports_is_the_harness_own_copy(reward) -> None:
    tests = ["assert isclose(area(1.0), 3.14159, rel_tol=1e-4)", "assert isclose(area(2.0), 12.56637, rel_tol=1e-4)"]
    patched = "import math\nmath.isclose = lambda *a, **k: True\n"
    attacks = [patched + "from math import isclose\ndef area(r):\n    return 0.0\n",
               patched + "from math import *\ndef area(r):\n    return 0.0\n"]
    honest = ["from math import isclose, pi\ndef area(r):\n    return pi * r * r\n",
              "from math import *\ndef area(r):\n    return pi * r * r\n"]
    completions = [fenced(code) for code in [*attacks, *honest]]
    assert reward([""] * 4, completions, tests=[tests] * 4) == [0.0, 0.0, 1.0, 1.0]
    # a name the solution defines is the code under test, even when it also imported it: its own gcd is judged
    own_gcd = "from math import gcd\ndef gcd(a, b):\n    return 1\n"
    assert reward([""], [fenced(own_gcd)], tests=[["assert gcd(12, 18) == 6"]]) == [0.0]


def test_stdlib_imports_are_read_from_the_solution_source() -> None:
    source = ("import math as m\nfrom os import path\ntry:\n    from math import *\nexcept ImportError:\n    pass\n"
              "from json import dumps\ndumps = None\nimport numpy as np\nfrom math import nothing_here\n"
              "def f():\n    from json import loads\n")
    used = {"m", "path", "sqrt", "dumps", "np", "nothing_here", "loads"}
    assert pyrpc.stdlib_imports(source, used) == {"m": math, "path": os.path, "sqrt": math.sqrt,
                                                  "nothing_here": pyrpc.UNAVAILABLE}
    minidom = pyrpc.stdlib_imports("import xml.dom.minidom", {"xml"})["xml"].dom.minidom  # binds xml, loads all
    assert minidom.parseString("<a/>").documentElement.tagName == "a"
