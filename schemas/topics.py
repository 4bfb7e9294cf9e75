"""Topic names. The defaults below are what every side assumes unless configured otherwise."""

from dataclasses import dataclass

REQUESTS = "calc.requests"
RESULTS = "calc.results"
DEAD_LETTERS = "calc.dlq"


@dataclass(frozen=True, slots=True)
class Topics:
    """The three topics of one calcstream deployment."""

    requests: str = REQUESTS
    results: str = RESULTS
    dlq: str = DEAD_LETTERS

    def all(self) -> tuple[str, str, str]:
        """All three names, requests first."""
        return (self.requests, self.results, self.dlq)
