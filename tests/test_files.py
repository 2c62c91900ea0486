"""Tests of nst_tf.files: atomic writes, outputs that spare inputs, run-bound backups."""

import dataclasses
import json
import os

import pytest

from nst_tf import files
from nst_tf.errors import ConfigError


@pytest.fixture
def photo_file(tmp_path):
    path = tmp_path / "photos" / "x.jpg"
    path.parent.mkdir()
    path.write_bytes(b"the user's photo")
    return path


def test_output_equal_to_an_input_is_refused(photo_file, tmp_path):
    with pytest.raises(ConfigError, match="overwrite an input.*x.jpg.*Received: output="):
        files.check_outputs_spare_inputs([photo_file], [tmp_path / "style.png", photo_file])
    # The same file under another spelling.
    with pytest.raises(ConfigError, match="overwrite an input"):
        files.check_outputs_spare_inputs([tmp_path / "photos" / ".." / "photos" / "x.jpg"], [photo_file])


def test_symlinks_and_hard_links_to_an_input_are_refused(photo_file, tmp_path):
    (tmp_path / "link.jpg").symlink_to(photo_file)
    (tmp_path / "linked_folder").symlink_to(photo_file.parent, target_is_directory=True)
    os.link(photo_file, tmp_path / "hard.jpg")
    for output in ("link.jpg", "linked_folder/x.jpg", "hard.jpg"):
        with pytest.raises(ConfigError, match="overwrite an input"):
            files.check_outputs_spare_inputs([tmp_path / output], [photo_file])
    # An input given through a link, the output by its real path.
    with pytest.raises(ConfigError, match="overwrite an input"):
        files.check_outputs_spare_inputs([photo_file], [tmp_path / "link.jpg"])


def test_an_output_that_holds_an_input_is_refused(photo_file):
    with pytest.raises(ConfigError, match="overwrite an input"):
        files.check_outputs_spare_inputs([photo_file.parent], [photo_file])


def test_distinct_outputs_pass(photo_file, tmp_path):
    files.check_outputs_spare_inputs([tmp_path / "out" / "x.jpg", tmp_path / "photos" / "y.jpg"],
                                     [photo_file, None, tmp_path / "photos"])
    assert photo_file.read_bytes() == b"the user's photo"


@dataclasses.dataclass
class _Config:
    style: str
    learning_rate: float = 1e-3
    steps: int = 10
    output: str = "a.keras"


def _settings(config):
    return files.run_settings(config, ignore=("output",), digest=("style",))


def test_backup_folder_records_settings_and_refuses_another_run(tmp_path):
    style = tmp_path / "style.png"
    style.write_bytes(b"style one")
    backup = tmp_path / "backup"
    config = _Config(str(style))
    files.check_backup_folder(backup, _settings(config))
    recorded = json.loads((backup / files.RUN_SETTINGS_FILE).read_text())
    assert recorded["learning_rate"] == 1e-3 and "output" not in recorded
    (backup / "training_metadata.json").write_text('{"epoch": 1}')  # A backup now exists.
    files.check_backup_folder(backup, _settings(dataclasses.replace(config, output="b.keras")))  # Same run.
    with pytest.raises(ConfigError) as error:
        files.check_backup_folder(backup, _settings(dataclasses.replace(config, learning_rate=0.01, steps=20)))
    message = str(error.value)
    assert "learning_rate=0.001 in the backup, 0.01 now" in message and "steps=10" in message
    assert "start afresh" in message and "\n" not in message
    style.write_bytes(b"another style at the same path")
    with pytest.raises(ConfigError, match="style="):
        files.check_backup_folder(backup, _settings(config))


def test_settings_without_a_backup_are_replaced(tmp_path):
    backup = tmp_path / "backup"
    files.check_backup_folder(backup, {"steps": 10})  # That run failed before its first backup.
    files.check_backup_folder(backup, {"steps": 20})
    assert json.loads((backup / files.RUN_SETTINGS_FILE).read_text()) == {"steps": 20}


def test_a_folder_that_is_not_a_backup_is_refused_and_left_alone(tmp_path):
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match="not empty and holds no run settings"):
        files.check_backup_folder(folder, {"steps": 10})
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.tex"]


def test_a_backup_folder_holding_the_runs_files_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="deleted when the run completes.*photos"):
        files.check_backup_folder(tmp_path, {"steps": 1}, keep=[tmp_path / "photos", None])
    assert not (tmp_path / files.RUN_SETTINGS_FILE).exists()


def test_existing_numbered_outputs_lists_the_intermediates_a_run_would_replace(tmp_path):
    for name in ("out_00010.png", "out_00015.png", "out_00020.png", "out_00040.png", "out_0010.png", "out_x.png",
                 "other_00010.png"):
        (tmp_path / name).write_bytes(b"")
    found = files.existing_numbered_outputs(tmp_path / "out.png", every=10, total=30)
    assert sorted(p.name for p in found) == ["out_00010.png", "out_00020.png"]
    assert files.existing_numbered_outputs(tmp_path / "out.png", every=0, total=30) == []


# ---------------------------------------------------------------- atomic writes


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


def test_keras_model_config_reads_the_archive_and_refuses_anything_else(tmp_path):
    import zipfile

    path = tmp_path / "net.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "TransformerNet",
                                                    "config": {"style_names": ["a", "photo"]}}))
    assert files.keras_model_config(path) == {"style_names": ["a", "photo"]}
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    for other in (tmp_path / "junk.keras", tmp_path / "missing.keras", tmp_path):
        assert files.keras_model_config(other) is None
