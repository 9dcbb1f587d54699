"""S3's event notifications, as the trigger's status listener reads them off SQS (no stack: the message bodies
are S3's documented shape; tests/airflow/test_trigger.py watches real ones arrive)."""

from __future__ import annotations

import json

from airlaunch.providers.airflow.triggers import status_notifications


def test_s3_event_notifications_are_decoded() -> None:
    body = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": "b"},
                    "object": {"key": "runs/d/manual__2026-11-24T04%3A33%3A10%2B00%3A00/t/-1/1/status.json"},
                },
            },
            {"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": "b"}, "object": {"key": "gone"}}},
        ]
    }
    assert status_notifications.written_keys(json.dumps(body)) == [
        ("b", "runs/d/manual__2026-11-24T04:33:10+00:00/t/-1/1/status.json")
    ]
    assert status_notifications.written_keys('{"Event": "s3:TestEvent"}') == []
    assert status_notifications.written_keys("not json") == []
