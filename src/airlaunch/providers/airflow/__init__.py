"""airlaunch's Airflow provider: launch catalog tasks through the launcher Lambda and wait without a slot."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airlaunch",
        "name": "airlaunch",
        "description": "Run containers through the airlaunch launcher Lambda; Airflow only schedules.",
        "hooks": [{"integration-name": "airlaunch", "python-modules": ["airlaunch.providers.airflow.hooks.launcher"]}],
        "operators": [
            {"integration-name": "airlaunch", "python-modules": ["airlaunch.providers.airflow.operators.launch"]}
        ],
        "sensors": [
            {"integration-name": "airlaunch", "python-modules": ["airlaunch.providers.airflow.sensors.launched_task"]}
        ],
        "triggers": [
            {
                "integration-name": "airlaunch",
                "python-modules": ["airlaunch.providers.airflow.triggers.launched_task"],
            }
        ],
        "integrations": [{"integration-name": "airlaunch", "external-doc-url": "https://pypi.org/project/airlaunch/"}],
        "extra-links": [
            "airlaunch.providers.airflow.links.ResultsLink",
            "airlaunch.providers.airflow.links.LogStreamLink",
            "airlaunch.providers.airflow.links.EcsTaskLink",
        ],
    }
