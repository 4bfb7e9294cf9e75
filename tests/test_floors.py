"""Nothing imports upward or sideways: the floors of ``tests/floors.py`` hold."""

from __future__ import annotations

import pytest

from tests.floors import PACKAGES, imports

# What each package may import of ours; anything else is a wrong arrow.
ALLOWED = {
    "schemas": set(),
    "core": {"schemas"},
    "consumer": {"schemas", "core"},
    "producer_api": {"schemas", "core"},
    "calcstream.client": {"schemas", "core", "calcstream"},  # calcstream: its __version__
    "calcstream.dev": {"schemas", "core", "consumer"},
    "calcstream.cli": {"schemas", "core", "consumer", "calcstream.client", "calcstream.dev",
                       "calcstream"},
    "calcstream": {"calcstream.client", "calcstream.cli", "calcstream.dev"},
}


def test_every_package_has_its_rule() -> None:
    assert set(ALLOWED) == set(PACKAGES)


@pytest.mark.parametrize("importer", sorted(ALLOWED))
def test_no_package_imports_beyond_its_floor(importer: str) -> None:
    wrong = {imported: n for (who, imported), n in imports().items()
             if who == importer and imported not in ALLOWED[importer]}
    assert wrong == {}, f"{importer} imports {wrong}"


def test_the_api_never_loads_the_kernels() -> None:
    assert imports()[("producer_api", "consumer")] == 0
