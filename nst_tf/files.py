"""Safe file handling: atomic writes, outputs that never replace inputs, backup folders tied to their run.

A reader never sees half a file, a failed write leaves no debris, a command never
writes over one of its own inputs, and a resumed run is the run that was interrupted.
"""

import contextlib
import dataclasses
import glob
import hashlib
import json
import os
import pathlib
import uuid
import zipfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside ``path``; renames it onto ``path`` when the block succeeds.

    The temporary file sits in the target's folder so that ``os.replace`` is a
    same-filesystem rename, which POSIX makes atomic; it keeps the target's suffix
    (``.keras``, ``.png``) for writers that choose a format by extension. On any
    exception, including KeyboardInterrupt, the temporary file is removed and the
    target is left as it was.

    Args:
        path: str or path-like, the final file. Parent folders are created.

    Yields:
        pathlib.Path of the temporary file to write.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        yield temp
        os.replace(temp, path)
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()


def _same_file(a, b):
    """True when two paths name one file: equal after resolving symlinks, or one inode (hard links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # Either does not exist yet: then the resolved paths decided.
        return False


def check_outputs_spare_inputs(outputs, inputs):
    """Refuses outputs that would replace an input file, before any work starts.

    An output replaces an input when both resolve to the same file after following
    symlinks, or are hard links of one file, or when the input lies inside a folder
    the output would replace (an output that is a folder holding the input).  A
    folder output is passed as the list of files it would receive, so a run that
    writes ``photos/a.jpg`` from ``photos/a.jpg`` is refused like a single file.

    Args:
        outputs: iterable of str or path-like. Every path the command will write.
        inputs: iterable of str, path-like or None. Every file or folder it reads;
            None entries (an optional input left out) are skipped.

    Raises:
        ConfigError: an output is an input, or holds one.
    """
    from nst_tf.errors import ConfigError

    inputs = [pathlib.Path(p) for p in inputs if p is not None]
    for output in map(pathlib.Path, outputs):
        resolved = output.resolve()
        for source in inputs:
            if _same_file(output, source) or resolved in source.resolve().parents:
                raise ConfigError(f"The output would overwrite an input file ('{source}'); choose another output "
                                  f"path. Received: output='{output}'")


def existing_numbered_outputs(path, every, total):
    """The files already present that a run saving ``path`` every `every` iterations would replace.

    Such a run writes ``<stem>_<iteration:05d><suffix>`` beside `path` at iterations
    `every`, 2 `every`, ... up to `total`; only the ones that exist can be an input, so
    only those are listed (cheap however many iterations the run has).

    Args:
        path: str or path-like. The final output.
        every: int. Iterations between intermediate saves; 0 or less: none.
        total: int. Iterations of the run.

    Returns:
        list of pathlib.Path.
    """
    path = pathlib.Path(path)
    if every <= 0 or not path.parent.is_dir():
        return []
    found = []
    for candidate in path.parent.glob(f"{glob.escape(path.stem)}_*{glob.escape(path.suffix)}"):
        number = candidate.name[len(path.stem) + 1:len(candidate.name) - len(path.suffix)]
        if number.isascii() and number.isdigit() and len(number) >= 5 and 0 < int(number) <= total \
                and int(number) % every == 0 and f"{int(number):05d}" == number:
            found.append(candidate)
    return found


RUN_SETTINGS_FILE = "run_settings.json"
"""File in a backup folder that records the settings of the run the backup belongs to."""


def file_digest(path):
    """The first 16 hex digits of a file's SHA-256, or None for None or an unreadable file.

    An unreadable file is left for the code that reads it to report.
    """
    if path is None:
        return None
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()[:16]


def run_settings(config, ignore=(), digest=(), paths=()):
    """The settings of a run as a JSON-serializable dict, for :func:`check_backup_folder`.

    Args:
        config: a dataclass instance (``TrainConfig``), one field per setting.
        ignore: field names that may change between a run and its resumption
            (output paths, the distribution strategy).
        digest: fields holding file paths (or tuples of them) whose *content* defines the
            run: recorded as the SHA-256 of each file, so another file at the same path
            counts as a change.
        paths: fields holding folder paths, recorded resolved (absolute).

    Returns:
        dict of field name -> value.
    """
    settings = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name in ignore:
            continue
        if field.name in digest:
            value = [file_digest(v) for v in value] if isinstance(value, (list, tuple)) else file_digest(value)
        elif field.name in paths and value is not None:
            value = str(pathlib.Path(value).resolve())
        settings[field.name] = value
    return settings


def check_backup_folder(folder, settings, keep=(), flag="--backup-dir"):
    """Ties a resumable run's backup folder to the settings of that run.

    A backup made under other settings (another style, learning rate, step count...)
    would be resumed silently and give a hybrid of two runs, so the settings are
    recorded in ``RUN_SETTINGS_FILE`` when the folder is first used and compared on
    every rerun.  The folder is deleted when the run completes (Keras
    ``BackupAndRestore``), so a folder that holds anything else, or that holds one of
    the run's own files, is refused rather than deleted.

    Args:
        folder: str or path-like. The backup folder; created if missing.
        settings: dict of JSON-serializable values that must not change between
            the run that made the backup and the one resuming it.
        keep: iterable of str, path-like or None. Inputs and outputs of the run, which
            must not lie inside `folder`.
        flag: str. The command-line flag of `folder`, for messages.

    Raises:
        ConfigError: the recorded settings differ (the message names each one, with
            both values), the folder holds files that are not a backup, or it holds
            one of `keep`.
    """
    from nst_tf.errors import ConfigError

    folder = pathlib.Path(folder)
    resolved = folder.resolve()
    for path in (pathlib.Path(p) for p in keep if p is not None):
        if resolved == path.resolve() or resolved in path.resolve().parents:
            raise ConfigError(f"{flag} is deleted when the run completes, and '{path}' lies inside it; choose a "
                              f"folder of its own. Received: {flag.lstrip('-').replace('-', '_')}='{folder}'")
    settings = json.loads(json.dumps(settings))  # As they read back: tuples become lists.
    record = folder / RUN_SETTINGS_FILE
    fresh = f"delete '{folder}' or choose another {flag} to start afresh"
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{flag} is a file, not a folder. Received: {flag.lstrip('-').replace('-', '_')}='{folder}'")
    # Only a backup can be resumed; settings recorded by a run that failed before its first
    # backup are simply replaced.
    stem = pathlib.Path(RUN_SETTINGS_FILE).stem
    has_backup = folder.is_dir() and any(p.name != RUN_SETTINGS_FILE and not p.name.startswith(f".{stem}.")
                                         for p in folder.iterdir())
    if has_backup and not record.is_file():
        raise ConfigError(f"{flag} is not empty and holds no run settings (it is not a backup folder of this "
                          f"version, and it is deleted when the run completes); {fresh}.")
    if has_backup:
        try:
            saved = json.loads(record.read_text())
        except (OSError, ValueError):
            saved = None
        if not isinstance(saved, dict):
            raise ConfigError(f"The run settings in {flag} cannot be read ('{record}'); {fresh}.")
        changed = [f"{key}={saved.get(key)!r} in the backup, {settings.get(key)!r} now"
                   for key in sorted(set(saved) | set(settings)) if saved.get(key) != settings.get(key)]
        if changed:
            raise ConfigError(f"{flag} holds a run with other settings ({'; '.join(changed)}): rerun with the "
                              f"backup's settings to resume it, or {fresh}.")
        return
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(record) as temp:
        temp.write_text(json.dumps(settings, indent=1, sort_keys=True))


def keras_model_config(path):
    """The constructor arguments of the model saved in a ``.keras`` file, read without TensorFlow.

    A ``.keras`` file is a zip archive whose ``config.json`` holds ``{"class_name", "config", ...}``
    (Keras 3 saving format); this returns its ``config`` dict.

    Args:
        path: str or path-like.

    Returns:
        dict, or None when `path` is not a readable ``.keras`` archive (a SavedModel folder,
        a missing or corrupt file: the loader reports those later, with its own message).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))["config"]
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile):
        return None
    return config if isinstance(config, dict) else None


def folder_kind(path):
    """How to name a folder given where a ``.keras`` file was expected, in an error message.

    Args:
        path: str or path-like of an existing folder.

    Returns:
        str: ``"a SavedModel folder (for serving)"`` when it holds ``saved_model.pb``, else ``"a folder"``.
    """
    return "a SavedModel folder (for serving)" if os.path.isfile(os.path.join(path, "saved_model.pb")) else "a folder"
