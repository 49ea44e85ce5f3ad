import pytest

from hwloop.errors import InputError
from hwloop.manifest import same_file, write_folder_atomically


def _fill(folder):
    (folder / "manifest.json").write_text("{}")


def test_a_file_above_the_output_folder_is_named_as_such(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "compress.csv").write_text("pc,address\n")
    for out in ("compress.csv/sub", "compress.csv/sub/deeper"):
        with pytest.raises(InputError) as info:
            write_folder_atomically(tmp_path / out, _fill)
        assert str(info.value) == (f"output {str(tmp_path / out)!r}: "
                                   f"{tmp_path / 'compress.csv'} is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compress.csv"]


def test_what_counts_as_an_earlier_output_is_the_callers(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("mine")
    with pytest.raises(InputError) as info:
        write_folder_atomically(out, _fill, is_earlier_output=lambda f: False,
                                kind="an earlier report")
    assert str(info.value) == (f"output folder {str(out)!r} exists and is not an earlier "
                               f"report: it would be replaced as a whole")
    assert [p.name for p in out.iterdir()] == ["index.html"]
    write_folder_atomically(out, _fill, is_earlier_output=lambda f: True)
    assert [p.name for p in out.iterdir()] == ["manifest.json"]  # replaced as a whole


def test_same_file_sees_through_links_and_dots(tmp_path):
    a = tmp_path / "a"
    a.write_text("x")
    (tmp_path / "hard").hardlink_to(a)
    (tmp_path / "soft").symlink_to(a)
    assert same_file(a, tmp_path / "hard") and same_file(tmp_path / "soft", a)
    assert same_file(tmp_path / "sub" / ".." / "a", a)  # sub does not exist
    assert same_file(tmp_path / "new", tmp_path / "." / "new")
    assert not same_file(tmp_path / "new", a)
