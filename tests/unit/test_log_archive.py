"""The running log goes up in parts, each byte once, one flush at a time (no S3: the upload is a function)."""

from __future__ import annotations

from pathlib import Path

from airlaunch.runtime.log_archive import LogArchive


def test_a_flush_uploads_what_was_printed_before_it_even_when_the_task_prints_during_a_slow_upload(
    tmp_path: Path,
) -> None:
    """A busy S3 (each PUT slow) while the task prints must not turn one flush into a PUT after another."""
    parts: list[bytes] = []

    def slow_upload(number: int, data: bytes) -> None:
        assert number == len(parts)
        parts.append(data)
        archive.write(f"printed during upload {number}\n")  # the task goes on printing meanwhile

    archive = LogArchive(tmp_path / "log.txt", 5, slow_upload, lambda age: 3600.0)
    try:
        archive.write("first\n")
        archive.flush()
        assert parts == [b"first\n"]
        archive.flush()
        assert parts == [b"first\n", b"printed during upload 0\n"]
    finally:
        archive.close()


def test_a_log_longer_than_a_part_goes_up_in_several_parts_cut_after_a_newline(tmp_path: Path) -> None:
    parts: list[bytes] = []
    archive = LogArchive(tmp_path / "log.txt", 5, lambda n, data: parts.append(data), lambda age: 3600.0, part_bytes=10)
    try:
        archive.write("12345\n1234567\n")
        archive.flush()
        assert parts == [b"12345\n", b"1234567\n"]
        assert archive.uploaded == 14 and archive.parts == 2
    finally:
        archive.close()
