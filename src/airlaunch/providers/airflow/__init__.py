"""airlaunch's Airflow provider: launch catalog tasks through the launcher Lambda and wait without a slot."""

from __future__ import annotations

from typing import Any

from airlaunch.providers.airflow.settings import provider_config


def get_provider_info() -> dict[str, Any]:
    """What Airflow's providers manager reads from the ``apache_airflow_provider`` entry point; ``config`` is the
    ``[airlaunch]`` section (airlaunch.providers.airflow.settings)."""
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
        "config": provider_config(),
    }
