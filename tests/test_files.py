"""The crash-safe file helpers every stage writes and reads its state with."""

import pytest

from copycat_tf.files import UnreadableJson, atomic_write, foreign_files, read_json, write_json


def test_write_json_round_trips_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "state.json"
    write_json(path, {"b": [1, 2], "a": {"x": None}})
    assert read_json(path) == {"a": {"x": None}, "b": [1, 2]}
    assert path.read_text().startswith('{\n  "a"')  # sorted, indented, one line per key
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_read_json_of_a_missing_file_is_none(tmp_path):
    assert read_json(tmp_path / "absent.json") is None


@pytest.mark.parametrize("content, reason", [
    (b"{\"count\": 3", "Expecting"),              # cut short by a crash elsewhere
    (b"\xff\xfe{}", "codec can't decode"),         # not UTF-8
    (b"[" * 100_000 + b"]" * 100_000, "recursion"),  # nesting deep enough to exhaust the parser
    (b"1" * 10_000, "digits"),                      # a number too long to convert
])
def test_read_json_turns_every_broken_file_into_one_reason(tmp_path, content, reason):
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(UnreadableJson) as caught:
        read_json(path)
    assert reason.lower() in str(caught.value).lower()
    assert "\n" not in str(caught.value)


def test_read_json_of_a_folder_is_unreadable_not_missing(tmp_path):
    (tmp_path / "state.json").mkdir()
    with pytest.raises(UnreadableJson):
        read_json(tmp_path / "state.json")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "state.json"
    write_json(path, {"version": 1})

    def fail(handle):
        handle.write(b"{\"version\": 2")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail)
    assert read_json(path) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_foreign_files_names_the_first_three_strangers_sorted(tmp_path):
    for name in ("report.json", "z.txt", "b.txt", "a.txt", "c.txt"):
        (tmp_path / name).write_text("")
    assert foreign_files(tmp_path, {"report.json"}) == "a.txt, b.txt, c.txt, ..."
    assert foreign_files(tmp_path, {"report.json", "z.txt", "c.txt"}) == "a.txt, b.txt"
    assert foreign_files(tmp_path, {"report.json", "z.txt", "c.txt", "a.txt", "b.txt"}) == ""
