"""The README's configuration reference names every variable the code reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_airlaunch_variable_is_documented() -> None:
    used = set()
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "localstack" / "plugin").rglob("*.py")]:
        used |= set(re.findall(r"\bAIRLAUNCH_[A-Z_]+[A-Z]\b", path.read_text()))
    readme = (ROOT / "README.md").read_text()
    missing = sorted(name for name in used if name not in readme)
    assert used and missing == []


def test_every_airlaunch_option_is_documented_with_its_airflow_name() -> None:
    """The [airlaunch] section's options, each with its AIRFLOW__AIRLAUNCH__ variable and its old name."""
    from airlaunch.providers.airflow.settings import OPTIONS

    readme = (ROOT / "README.md").read_text()
    for key, option in OPTIONS.items():
        assert f"| `{key}` | `{option.airflow_variable}` | `{option.legacy}` |" in readme, key
