"""Exit codes, the one error type every start-up failure is reported under, and the one the
tools (`certs`, `client-config`, `gce`) report a user's mistake under."""

EXIT_OK = 0
EXIT_FAILURE = 1
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
    """A tool cannot do what was asked: one line naming what is wrong and the fix; no traceback."""

    exit_code = EXIT_FAILURE
