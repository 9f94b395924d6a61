"""Errors ftune reports to the user as a message, not a traceback."""


class FtuneError(Exception):
    """An error whose message is complete and meant for the user."""


class MethodNotApplicable(FtuneError):
    """The technique cannot work on this model (e.g. BitFit on a model without biases)."""


class ConfigError(FtuneError):
    """One or more configuration problems, all collected before anything heavy runs."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} config error" + ("s" if count != 1 else "")
        super().__init__(head + "\n" + "\n".join(f"  {p}" for p in self.problems))


class DataError(FtuneError):
    """The data cannot be used as configured (no rows left, too many bad rows, ...)."""
