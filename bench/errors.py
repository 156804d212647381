"""ConfigError, the one kind of bad input (bench.registry re-exports it; this module sits below every
other, so that the lowest layers, such as bench.settings, raise it too)."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad input: names the key and what is allowed. The CLI turns it into exit code 2."""

    def __init__(self, key: str, message: str, source: str | None = None):
        self.key = key
        self.message = message
        self.source = source
        super().__init__(self.format())

    def format(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}key '{self.key}': {self.message}" if self.key else f"{where}{self.message}"

    def with_source(self, source: str | None) -> ConfigError:
        return self if self.source or not source else ConfigError(self.key, self.message, source)


class StoreUnreachable(Exception):
    """A database store that stayed unreachable past OPTBENCH_DB_RETRY: not bad input (the command reached it
    before), so the command says so in one line and exits 3; finished results wait on local disk."""
