"""bench/s3_traffic.py: requests to LocalStack classed by caller, method, file and answer, from raw packets."""

from __future__ import annotations

import struct

from bench.s3_traffic import Request, S3Traffic, breakdown

PORT = 4566
TRY = "/airlaunch-results/runs/dag/run/launch/3/1-abc"


def packet(source: int, destination: int, payload: bytes) -> bytes:
    """An IPv4 packet (20-byte header) holding a TCP segment (20-byte header) with ``payload``."""
    tcp = struct.pack("!HHIIBBHHH", source, destination, 0, 0, 5 << 4, 0x18, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, b"\x7f\0\0\1", b"\x7f\0\0\1")
    return ip + tcp


def request(method: str, path: str, agent: str, extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: {agent}\r\n{extra}\r\n".encode()


def test_requests_are_paired_with_their_answers_per_connection_and_classed() -> None:
    traffic = S3Traffic(PORT)
    traffic.segment(packet(50001, PORT, request("GET", f"{TRY}/status.json", "aiobotocore/2.15 md/Botocore#1.35")))
    traffic.segment(packet(50002, PORT, request("PUT", f"{TRY}/log/000000", "Botocore/1.35 ua/2.0")))
    traffic.segment(packet(50002, PORT, b"the body of the log part, not a request"))
    traffic.segment(packet(50003, PORT, request("GET", f"{TRY}/log.txt", "aiobotocore/2.15", "Range: bytes=0-9\r\n")))
    traffic.segment(packet(PORT, 50002, b"HTTP/1.1 100 Continue\r\n\r\n"))  # then the body, then the answer
    traffic.segment(packet(PORT, 50002, b"HTTP/1.1 200 OK\r\n\r\n"))
    traffic.segment(packet(PORT, 50001, b"HTTP/1.1 404 Not Found\r\n\r\n"))
    traffic.segment(packet(50004, PORT, request("GET", f"{TRY}/params.yaml", "Boto3/1.35 md/Botocore#1.35")))
    traffic.segment(packet(50005, PORT, request("POST", "/", "aiobotocore/2.15", "X-Amz-Target: SQS.Receive\r\n")))

    seen = traffic.stop()

    assert [(r.caller, r.kind, r.file, r.status) for r in seen] == [
        ("runtime", "PUT", "log part", 200),
        ("triggerer", "GET", "status.json", 404),
        ("triggerer", "GET range", "log.txt", 0),  # no answer seen: kept, status unknown
        ("launcher", "GET", "params.yaml", 0),
        ("triggerer", "POST", "sqs", 0),
    ]


def test_breakdown_counts_requests_a_try_and_leaves_sqs_apart() -> None:
    status = Request("GET", f"{TRY}/status.json", "aiobotocore/2", False, "", 404)
    params = Request("PUT", f"{TRY}/params.yaml", "Boto3/1", False, "", 200)
    sqs = Request("POST", "/", "aiobotocore/2", False, "AmazonSQS.ReceiveMessage", 200)
    health = Request("GET", "/_localstack/init/ready", "python-urllib3/2", False, "", 200)

    other_dag = Request("GET", "/airlaunch-results/runs/other_dag/r/t/0/1-x/status.json", "Boto3/1", False, "", 404)

    result = breakdown([status, status, status, params, sqs, health, other_dag], tries=2, under="/dag/")

    assert result["per_try"] == 2.0
    assert result["by_caller"] == {"triggerer": 1.5, "launcher": 0.5}
    assert result["by_request"]["triggerer GET status.json 404"] == 1.5
    assert result["sqs_calls"] == 1
    assert result["elsewhere"] == 1  # another DAG's key: another session's request
