"""When a missing tool may skip its tests, and when it must fail them instead.

A run counts as CI when the variable ``CI`` holds anything but "", "0" or "false" (in any case):
CI systems spell it "true", "1", "yes" or "True", and a guard that reads only one spelling lets
a run without PostgreSQL, Chromium or Node skip those suites and still pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn

import pytest

#: The values of ``CI`` that mean "not CI".
NOT_CI = frozenset({"", "0", "false"})


def under_ci(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` describes a CI run."""
    return environ.get("CI", "").strip().lower() not in NOT_CI


def skip_or_fail(environ: Mapping[str, str], message: str, *, under_ci_message: str) -> NoReturn:
    """Skip with ``message`` on a developer's machine; fail with ``under_ci_message`` under CI."""
    if under_ci(environ):
        pytest.fail(f"{under_ci_message} (CI={environ.get('CI', '')!r})", pytrace=False)
    pytest.skip(message)
