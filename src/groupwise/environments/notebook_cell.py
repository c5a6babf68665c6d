"""Run main.py as a notebook cell runs: a last bare expression's value is printed (its repr, unless None).

Never imported by groupwise: `sandboxed_python.run_python(..., echo=True)` copies this file into the sandbox and
runs it beside the model's main.py. A failure prints as the plain interpreter prints it, the model's own lines
and line numbers, this file's frame left out.
"""

import ast
import os
import sys
import traceback

PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "main.py")


def main() -> None:
    with open(PROGRAM, "rb") as file:
        source = file.read()  # bytes: ast decodes them as the interpreter would (a bad byte is a SyntaxError)
    namespace = {"__name__": "__main__", "__file__": PROGRAM}
    try:
        tree = ast.parse(source, PROGRAM)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, PROGRAM, "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), PROGRAM, "eval"), namespace)
            if value is not None:
                print(repr(value))
    except Exception as error:  # noqa: BLE001 - shown as the interpreter shows it; SystemExit passes through
        traceback.print_exception(type(error), error, error.__traceback__.tb_next)
        sys.exit(1)


if __name__ == "__main__":  # run as a script in the sandbox, never on import
    main()
