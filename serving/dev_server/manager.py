"""The model manager: which versions of which models are loaded, polled from TF Serving's folder layout.

A version folder is ``<base_path>/<version>``, the version made of ASCII digits (other
names are ignored, as an export's temporary folder is).  A folder is loaded once it
looks complete -- ``saved_model.pb`` and ``variables/variables.index`` present -- and
unchanged since the previous poll, so a folder still being copied is not loaded
half-written.  A load that fails is retried when the folder's files change, as TF
Serving retries failed loads.
"""

import logging
import os
import pathlib
import re
import threading
import time

from ..status import Code, ModelVersionStatus
from .errors import ServingError
from .servable import Servable

logger = logging.getLogger("dev_server")

START, LOADING, AVAILABLE, UNLOADING, END = (ModelVersionStatus.START, ModelVersionStatus.LOADING,
                                             ModelVersionStatus.AVAILABLE, ModelVersionStatus.UNLOADING,
                                             ModelVersionStatus.END)
_VERSION = re.compile(r"[0-9]{1,18}")  # ASCII digits that fit the int64 of ModelSpec.version.
REQUIRED_FILES = ("saved_model.pb", os.path.join("variables", "variables.index"))
"""Files a version folder needs before it is loaded."""


def folder_stamp(path):
    """What a version folder holds: sorted (relative path, size, mtime) of every file; None if incomplete.

    Args:
        path: pathlib.Path. A version folder.

    Returns:
        tuple, equal between two calls exactly when no file was added, removed or
        rewritten; None when a file of ``REQUIRED_FILES`` is missing or the folder
        cannot be read.
    """
    try:
        if not all((path / name).is_file() for name in REQUIRED_FILES):
            return None
        entries = []
        for root, _, names in os.walk(path):
            for name in names:
                info = os.stat(os.path.join(root, name))
                entries.append((os.path.relpath(os.path.join(root, name), path), info.st_size, info.st_mtime_ns))
        return tuple(sorted(entries))
    except OSError:
        return None


class VersionState:
    """TF Serving's ``ModelVersionStatus`` of one version: state and error."""

    def __init__(self, state, code=Code.OK, message=""):
        self.state, self.code, self.message = state, code, message
        self.servable = None
        self.stamp = None  # What the folder held when a load failed (retried when it changes).


class ModelManager:
    """Loads, serves and unloads the versions of the configured models.

    Args:
        config: tensorflow.serving.ModelServerConfig with a ``model_config_list``.
        base_path_prefix: str or None. If given, every ``base_path`` is read from
            ``prefix/<last component of base_path>``, which must resolve to a folder
            inside the prefix; otherwise base paths must be absolute, as in TF Serving.
        warmup: bool. Replay warm-up records when a version loads.
        limits: limits.RequestLimits or None. Size limits of image inputs.

    Raises:
        ValueError: the config is not a model_config_list, repeats a name, names
            another platform, has a relative base_path without a prefix, or a
            base_path that leaves the prefix.
    """

    def __init__(self, config, base_path_prefix=None, warmup=True, limits=None):
        if config.WhichOneof("config") != "model_config_list":
            raise ValueError("the model config must hold a model_config_list")
        self.models = {}
        self.base_paths = {}
        for model in config.model_config_list.config:
            if model.name in self.models:
                raise ValueError(f"Illegal to list model {model.name} multiple times in config list")
            if model.model_platform not in ("", "tensorflow"):
                raise ValueError(f"model {model.name}: only model_platform 'tensorflow' is served")
            if base_path_prefix is not None:
                prefix = pathlib.Path(base_path_prefix).resolve()
                path = (prefix / pathlib.PurePosixPath(model.base_path.rstrip("/")).name).resolve()
                if prefix not in path.parents:  # "/models/.." must not serve the prefix's parent.
                    raise ValueError(f"model {model.name}: base_path {model.base_path!r} resolves to {path}, outside "
                                     f"--model_base_path_prefix {prefix}")
            elif os.path.isabs(model.base_path):
                path = pathlib.Path(model.base_path)
            else:
                raise ValueError(f"Expected model {model.name} to have an absolute path or URI; got "
                                 f"base_path()={model.base_path} (or pass --model_base_path_prefix)")
            self.models[model.name] = model
            self.base_paths[model.name] = path.resolve()
        self.warmup = warmup
        self.limits = limits
        self._seen = {}  # (name, version) -> folder stamp at the previous poll.
        self._ignored = set()  # Folder names already warned about.
        self._states = {name: {} for name in self.models}  # name -> {version: VersionState}
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    # Loading.

    def _aspired(self, name, present):
        policy = self.models[name].model_version_policy
        which = policy.WhichOneof("policy_choice")
        if which == "all":
            return set(present)
        if which == "specific":
            return set(present) & set(policy.specific.versions)
        return set(sorted(present)[-max(1, policy.latest.num_versions):]) if present else set()

    def _versions(self, base):
        """{version: folder} of the ASCII-digit sub-folders of a base path."""
        present = {}
        if not base.is_dir():
            return present
        for path in base.iterdir():
            if _VERSION.fullmatch(path.name) and path.is_dir():
                present[int(path.name)] = path
            elif path.name.isdigit() and path not in self._ignored:  # Looks like a version, but is not one.
                self._ignored.add(path)
                logger.warning("Ignoring %s: version folders are named with ASCII digits (at most 18)", path)
        return present

    def poll(self, settle=True):
        """Scans every base path once: loads new aspired versions, then unloads the others.

        Args:
            settle: bool. Load a version folder only when it is unchanged since the
                previous poll (True, while serving), or as soon as it looks complete
                (False: the scan at start-up).
        """
        with self._poll_lock:
            for name, base in self.base_paths.items():
                present = self._versions(base)
                aspired = self._aspired(name, list(present))
                for version in sorted(aspired, reverse=True):
                    state = self._states[name].get(version)
                    if state is not None and state.state == AVAILABLE:
                        continue
                    stamp = folder_stamp(present[version])
                    previous, self._seen[name, version] = self._seen.get((name, version)), stamp
                    if stamp is None or (state is not None and state.stamp == stamp):
                        continue  # Incomplete, or failed to load and unchanged since.
                    if settle and previous != stamp:
                        continue  # Changed since the last poll: maybe still being written.
                    self._load(name, version, present[version], stamp)
                # Availability preserving, as TF Serving's default policy: older versions unload only
                # once an aspired one is available, so a broken new version never stops the service.
                if any(self._states[name][v].state == AVAILABLE for v in aspired if v in self._states[name]):
                    for version, state in list(self._states[name].items()):
                        if state.state == AVAILABLE and version not in aspired:
                            self._unload(name, version)

    def _load(self, name, version, path, stamp):
        state = VersionState(LOADING)
        with self._lock:
            self._states[name][version] = state
        start = time.perf_counter()
        try:
            servable = Servable(name, version, path, self.limits)
            requests = servable.warm_up() if self.warmup else 0
        except Exception as error:  # noqa: BLE001 - any failure is reported in the version status.
            message = error.message if isinstance(error, ServingError) else f"{type(error).__name__}: {error}"
            code = error.code if isinstance(error, ServingError) else Code.UNKNOWN
            logger.error("Loading servable: {name: %s version: %d} failed: %s", name, version, message)
            new = VersionState(END, code, " ".join(message.split())[:1000])
            new.stamp = stamp
        else:
            logger.info("Successfully loaded servable version {name: %s version: %d} in %.1f s (%d warm-up "
                        "requests)", name, version, time.perf_counter() - start, requests)
            new = VersionState(AVAILABLE)
            new.servable = servable
        with self._lock:
            self._states[name][version] = new

    def _unload(self, name, version):
        with self._lock:
            self._states[name][version] = VersionState(END)  # In-flight requests keep their reference.
        logger.info("Unloaded servable version {name: %s version: %d}", name, version)

    def start(self, interval):
        """Polls the base paths every `interval` seconds in a daemon thread (0: never)."""
        if interval > 0:
            self._thread = threading.Thread(target=self._run, args=(interval,), name="poll", daemon=True)
            self._thread.start()

    def _run(self, interval):
        while not self._stop.wait(interval):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - keep polling whatever a folder looks like.
                logger.exception("File system poll failed")

    def stop(self):
        self._stop.set()

    # Requests.

    def _version_for(self, spec):
        """``(version or None, request text)`` for a ModelSpec; raises for an unknown label."""
        choice = spec.WhichOneof("version_choice")
        if choice == "version":
            return spec.version.value, f"Specific({spec.name}, {spec.version.value})"
        if choice == "version_label":
            labels = self.models[spec.name].version_labels if spec.name in self.models else {}
            if spec.version_label not in labels:
                raise ServingError(Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {spec.version_label}")
            version = labels[spec.version_label]
            return version, f"Specific({spec.name}, {version})"
        return None, f"Latest({spec.name})"

    def servable(self, spec):
        """The AVAILABLE servable a ModelSpec asks for (highest version when it names none).

        Raises:
            ServingError: INVALID_ARGUMENT without a name or for an unknown label,
                NOT_FOUND when no such version is available.
        """
        if not spec.name:
            raise ServingError(Code.INVALID_ARGUMENT, "ModelSpec has no name specified.")
        version, request = self._version_for(spec)
        with self._lock:
            states = self._states.get(spec.name, {})
            if version is None:
                available = [v for v, s in states.items() if s.state == AVAILABLE]
                version = max(available) if available else None
            state = states.get(version)
            if state is not None and state.state == AVAILABLE:
                return state.servable
        raise ServingError(Code.NOT_FOUND, f"Servable not found for request: {request}{self._served(spec)}")

    def status(self, spec):
        """``[(version, state, code, message)]`` as GetModelStatus reports it.

        Raises:
            ServingError: NOT_FOUND for an unknown model or version, INVALID_ARGUMENT
                for an unknown label.
        """
        version, _ = self._version_for(spec)
        with self._lock:
            states = dict(self._states.get(spec.name, {}))
        if version is not None:
            if version not in states:
                raise ServingError(Code.NOT_FOUND, f"Could not find version {version} of model {spec.name}")
            states = {version: states[version]}
        if not states:
            raise ServingError(Code.NOT_FOUND, f"Could not find any versions of model {spec.name}{self._served(spec)}")
        return [(v, s.state, s.code, s.message) for v, s in sorted(states.items())]

    def _served(self, spec):
        """For an unknown model name: the names this server has (TF Serving's own message has none)."""
        if spec.name in self.models:
            return ""
        return f"; this server serves: {', '.join(sorted(self.models)) or 'no models'}"

