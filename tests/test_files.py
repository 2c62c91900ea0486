"""nst_tf.files: atomic writes leave either the old file or the whole new one, and no debris."""

import pytest

from nst_tf import files


def test_the_new_file_replaces_the_old_one_only_at_the_end(tmp_path):
    target = tmp_path / "sub" / "model.keras"
    with files.atomic_path(target) as temp:
        assert temp.parent == target.parent and temp.suffix == ".keras" and temp != target
        temp.write_text("new")
        assert not target.exists()  # Nothing appears until the block succeeds.
    assert target.read_text() == "new"
    assert list(target.parent.iterdir()) == [target]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "out.png"
    target.write_text("old")
    for error in (RuntimeError("disk full"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with files.atomic_path(target) as temp:
                temp.write_text("half")
                raise error
        assert target.read_text() == "old"
        assert list(tmp_path.iterdir()) == [target]
