"""Exit codes, the one error type every start-up failure is reported under, and the one the
operator tools report user errors under."""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 64  # EX_USAGE: an argument the entrypoint does not know
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h: the configuration is wrong, retrying will not help


class StartupError(Exception):
    """Nothing was started: the message is one line, safe to print (it never holds secret text)."""

    exit_code = EXIT_FAILURE


class ConfigError(StartupError):
    """A variable is wrong: names it, says what is wrong and how to fix it."""

    exit_code = EXIT_CONFIG

    def __init__(self, variable: str, problem: str, fix: str) -> None:
        super().__init__(f"{variable}: {problem}; {fix}")
        self.variable = variable


class ToolError(Exception):
    """An operator tool (`certs`, ...) was asked for something it cannot do: the message is one
    line naming what is wrong and how to fix it; `cli.main` prints it, never a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
