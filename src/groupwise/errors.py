"""The one error type for user mistakes: it names the problem and the fix, and the CLI prints it as one line."""


class GroupwiseError(Exception):
    """A user-facing error. `str(err)` is a single line: '<problem> -- <fix>'."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = " ".join(problem.split())
        self.fix = " ".join(fix.split())
        super().__init__(f"{self.problem} -- {self.fix}" if self.fix else self.problem)
