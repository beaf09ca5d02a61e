"""Configuration problems found before Hydra runs a job, reported as one ``error:`` line (exit 2).

``hydra.main`` prints its own composition errors as a multi-line report and exits 1, and a missing mandatory
value (``???``) only surfaces as a traceback when the job reads it. :func:`config_error` composes the job's config
exactly as ``hydra.main`` will (Hydra's compose API, the same config folder and overrides; for ``-m``, every job of
the sweep, expanded by Hydra's ``BasicSweeper``) and turns the first problem into one line that names the key and
what is expected: an unknown key (``defense.sigmaa=2``), an unknown group option (``dataset=nosuch``), a value left
out (``dataset.root`` of ``dataset=pennfudan``: which folder, and how to get it), an unparsable override or an
interpolation that does not resolve, or a group that was renamed (``detector=NAME`` of ``anonlab bench``, now
``region_detector=NAME``; ``camera=NAME``, now the two groups ``capture`` and ``release``). ``--help``,
``--hydra-help``, ``--info``, ``--version`` and shell completion
are left to Hydra; ``--cfg`` prints a config with values still missing, so only composition is checked there.
"""

from __future__ import annotations

import re
from pathlib import Path

from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
)

#: flags after which Hydra does something other than run jobs: nothing to check
_NOT_A_RUN = ("help", "hydra_help", "version", "shell_completion", "info", "experimental_rerun")


def config_error(conf_dir: Path, config_name: str, argv: list[str]) -> str | None:
    """The first configuration problem of ``anonlab <cmd> argv`` (Hydra arguments: flags and overrides) composed
    from ``conf_dir/<config_name>.yaml``, as one line without the ``error:`` prefix; None when every job composes,
    has every mandatory value and resolves. Arguments Hydra's own parser rejects are left to Hydra (None)."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser

    try:
        args = get_args_parser().parse_args(argv)
    except SystemExit:  # Hydra's parser will print its usage line itself
        return None
    if any(getattr(args, flag, None) for flag in _NOT_A_RUN):
        return None
    config_name = args.config_name or config_name
    if args.config_dir or args.config_path:
        return None  # another config tree: Hydra reports on it
    jobs = _jobs(list(args.overrides), bool(args.multirun))
    if isinstance(jobs, str):
        return jobs
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        for overrides in jobs:
            problem = _group_values(conf_dir, overrides)
            if problem:
                return problem
            try:
                cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
            except HydraException as e:
                renamed = _renamed(config_name, overrides)
                if renamed:
                    return renamed
                if isinstance(e, MissingConfigException):
                    return _missing_option(e)
                return (_unknown_key(e, conf_dir, config_name, overrides) or _wrong_kind(e, overrides)
                        or _one_line(str(e)))
            except OmegaConfBaseException as e:
                return _omegaconf_line(e)
            except TypeError as e:  # OmegaConf: a key into a list, e.g. detectors.centerface.max_side=320
                return _key_into_list(overrides) or _one_line(str(e))
            problem = _replaced_mapping(conf_dir, config_name, overrides, cfg)
            if problem:
                return problem
            if args.cfg:
                continue
            problem = _unresolved(cfg) or _missing_values(cfg, conf_dir, config_name)
            if problem:
                return problem
    return None


#: the expected form of keys whose value has a structure, for messages about a value of the wrong kind
_FORMS = {"detectors": "a list of conf/detector names, e.g. detectors=[centerface,yunet]"}


def _parsed(overrides: list[str]) -> list:
    """Hydra's own parse of the overrides (``Override`` objects); [] when they do not parse (Hydra says why)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return []


def _options(conf_dir: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def _group_values(conf_dir: Path, overrides: list[str]) -> str | None:
    """A config group (``release``, ``dataset``, ...) given something other than one option name: ``release=null``
    and ``release=5`` were Hydra tracebacks, and ``release=[jpeg,h264]`` silently merged both files (the last one
    won). One line naming the group, its options and how to run several."""
    for o in _parsed(overrides):
        group = o.key_or_group
        if o.is_delete() or o.is_sweep_override() or "." in group or group == "hydra" \
                or not (conf_dir / group).is_dir():
            continue  # (a sweep without -m: Hydra's own message says to add it)
        value = o.value()
        if isinstance(value, str) or isinstance(value, dict):  # a mapping sets keys of the chosen option
            continue
        options = _options(conf_dir, group)
        names = value if isinstance(value, list) and value and all(isinstance(v, str) for v in value) else options[:2]
        several = f"; to run several, one job each: -m {group}={','.join(names)}" if isinstance(value, list) else ""
        none = f" ({group}=none: no {group} stage)" if "none" in options else ""
        return (f"{o.input_line}: {group} is a config group: give one option name, a file conf/{group}/NAME.yaml"
                f"{none}; valid: {', '.join(options)}{several}")
    return None


def _wrong_kind(e: HydraException, overrides: list[str]) -> str | None:
    """``sweep={name: pixelate}``: a mapping given where the config holds a list (or the reverse), which Hydra
    reports as ``Error merging override``. One line naming the key and the form it takes."""
    from omegaconf.errors import ConfigTypeError

    cause = e.__cause__
    key = getattr(cause, "full_key", None)
    m = re.search(r"Cannot merge (\w+)Config with (\w+)Config", str(cause)) if isinstance(cause, ConfigTypeError) \
        else None
    if not key or not m:
        return None
    from anonlab.build import SWEEP_FORM

    # (which side of OmegaConf's "Cannot merge XConfig with YConfig" is the override's varies: read the value)
    o = next((o for o in _parsed(overrides) if o.key_or_group == key), None)
    value = o.value() if o is not None else None
    if not isinstance(value, (dict, list)):
        return None
    given, expected = ("a mapping", "a list") if isinstance(value, dict) else ("a list", "a mapping")
    form = {**_FORMS, "sweep": SWEEP_FORM}.get(str(key), expected)
    return f"{o.input_line}: {key} takes {form}, not {given}"


def _replaced_mapping(conf_dir: Path, config_name: str, overrides: list[str], cfg: DictConfig) -> str | None:
    """A key that holds a group of settings in ``<config_name>.yaml`` (``loader``, ``regions``) replaced by a single
    value or a list (``regions=null``, ``loader=5``): Hydra accepts it and the job later failed with a traceback. One
    line naming the key and the settings it holds. Mappings that are empty there (``detector_overrides: {}``) may be
    null."""
    try:
        root = OmegaConf.load(conf_dir / f"{config_name}.yaml")
    except (OSError, OmegaConfBaseException):
        return None
    for o in _parsed(overrides):
        key = o.key_or_group
        if o.is_delete() or o.is_sweep_override() or key.startswith("hydra") or (conf_dir / key).is_dir():
            continue
        was = OmegaConf.select(root, key, default=None, throw_on_resolution_failure=False)
        now = OmegaConf.select(cfg, key)
        if isinstance(was, DictConfig) and not isinstance(now, DictConfig) and (len(was) or now is not None):
            keys = sorted(str(k) for k in was.keys() if not str(k).startswith("_"))
            if not keys:  # an empty mapping (detector_overrides: {}) may be null, nothing else
                return f"{o.input_line}: {key} is a mapping ({key}.NAME=...), or null; not {now!r}"
            return (f"{o.input_line}: {key} is a group of settings ({', '.join(keys)}), not one value; set one of "
                    f"them, e.g. {key}.{keys[0]}=...")
    return None


#: keys of the former single camera (``camera.KEY=V``) that moved elsewhere than ``capture.KEY``: where to
_CAMERA_KEYS = {"capture_jpeg": "capture.jpeg_quality", "release_resolution": "release.resolution",
                "release_codec": "release.codec", "release_quality": "release.quality", "release_crf": "release.crf",
                "release_clip": "release.clip"}


def _renamed(config_name: str, overrides: list[str]) -> str | None:
    """An override of a group that this config no longer has because it was renamed, as one line saying what to
    write now: ``detector`` (the region detector, now ``region_detector``) and ``camera`` (split into ``capture``
    and ``release``). Groups the config does have (``anonlab patch train detector=...``) are left alone."""
    from hydra import compose

    try:
        keys = set(compose(config_name, overrides=[]).keys())
    except (HydraException, OmegaConfBaseException):
        return None
    for o in overrides:
        key = _override_key(o)
        head, dot, rest = key.partition(".")
        value = o.split("=", 1)[1] if "=" in o else ""
        if head in keys or head not in ("detector", "camera"):
            continue
        if head == "detector":
            return (f"{o}: the region detector (regions.source=detector) is now the region_detector group; write "
                    f"region_detector{dot}{rest}={value} (the scored panel is detectors=[...])")
        if not dot:
            now = {"none": "capture=none release=none", "social_release": "release=social"}.get(
                value, f"capture={value}")
        else:
            now = f"{_CAMERA_KEYS.get(rest, 'capture.' + rest)}={value}"
        return (f"{o}: the camera is now two groups, capture (what the camera records, before the defense: "
                f"conf/capture/) and release (how the redacted footage is posted: conf/release/); write {now}")
    return None


def _jobs(overrides: list[str], multirun: bool) -> list[list[str]] | str:
    """The override list of every job: one job without ``-m``; the sweep expanded by Hydra's basic sweeper with."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not multirun:
        return [overrides]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        return _one_line(str(e))
    batches = BasicSweeper.split_arguments(parsed, None)
    return [list(job) for batch in batches for job in batch] or [overrides]


def _key_into_list(overrides: list[str]) -> str | None:
    """The message for an override that sets a key inside ``detectors`` (a list of names; found by a new user,
    2026-12-01, as an OmegaConf TypeError traceback): a scored detector's parameters are set under
    ``detector_overrides``."""
    for o in overrides:
        key, _, value = o.partition("=")
        parts = key.lstrip("+~").split(".")
        if parts[0] == "detectors" and len(parts) >= 3:
            name, param = parts[1], ".".join(parts[2:])
            return (f"{o}: detectors is a list of names; set a detector's parameter with "
                    f"+detector_overrides.{name}.{param}={value}")
    return None


def _one_line(message: str) -> str:
    lines = [s.strip() for s in message.strip().splitlines() if s.strip()]
    return "; ".join(lines) if lines else "invalid configuration"


def _missing_option(e: MissingConfigException) -> str:
    missing = str(getattr(e, "missing_cfg_file", "") or "")
    options = list(getattr(e, "options", None) or [])
    if "/" in missing and options:
        group, name = missing.rsplit("/", 1)
        return f"{group}={name}: no such {group} (no {group}/{name}.yaml); valid: {', '.join(options)}"
    return _one_line(str(e).split("Config search path:")[0])


def _unknown_key(e: HydraException, conf_dir: Path, config_name: str, overrides: list[str]) -> str | None:
    """``defense.sigmaa=2``: one line naming the key and the keys that exist beside it."""
    cause = e.__cause__
    if not isinstance(cause, (ConfigKeyError, ConfigAttributeError)) or not getattr(cause, "full_key", None):
        return None
    key = str(cause.full_key)
    parent, _, leaf = key.rpartition(".")
    valid, choice = _keys_beside(conf_dir, config_name, [o for o in overrides if _override_key(o) != key], parent)
    given = next((o for o in overrides if _override_key(o) == key), f"{key}=...")
    where = f"in {parent}={choice}" if choice else f"in {parent}" if parent else "at the top level"
    listed = f"; valid keys {where}: {', '.join(valid)}" if valid else f"; {parent}={choice} has no keys" \
        if choice else ""
    if choice:
        # a key of another option of the group (release=none release.quality=50): say which options have it
        having = [n for n in _options(conf_dir, parent) if leaf in _yaml_keys(conf_dir / parent / f"{n}.yaml")]
        if having:
            value = given.split("=", 1)[1] if "=" in given else "..."
            return (f"{key}: unknown key {leaf!r}{listed}; the {parent} options with {leaf!r}: {', '.join(having)} "
                    f"(e.g. {parent}={having[0]} {key}={value})")
    return f"{key}: unknown key {leaf!r}{listed} (to add a new key on purpose: +{given.lstrip('+~')})"


def _yaml_keys(path: Path) -> list[str]:
    try:
        node = OmegaConf.load(path)
    except (OSError, OmegaConfBaseException):
        return []
    return [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []


def _override_key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _keys_beside(conf_dir: Path, config_name: str, overrides: list[str], parent: str) -> tuple[list[str], str | None]:
    """The keys under ``parent`` once the other overrides are applied, and the option chosen for ``parent`` when it
    is a config group (``release`` -> ``none``), else None."""
    from hydra import compose

    try:
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException):
        return [], None
    choice = cfg.hydra.runtime.choices.get(parent) if parent and (conf_dir / parent).is_dir() else None
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    node = OmegaConf.select(cfg, parent) if parent else cfg
    keys = sorted(str(k) for k in node.keys() if not str(k).startswith("_")) if isinstance(node, DictConfig) else []
    return keys, choice


def _omegaconf_line(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    msg = str(e).splitlines()[0].strip() if str(e).strip() else type(e).__name__
    return f"{key}: {msg}" if key else msg


def _missing_values(cfg: DictConfig, conf_dir: Path, config_name: str) -> str | None:
    """Every mandatory value (``???``) left out, in one line: what each is (the YAML's comment on it) and, for a
    data set root, the ``anonlab datasets fetch`` command that downloads it."""
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    missing = sorted(key for key, node in _leaves(job) if node._is_missing())
    if not missing:
        return None
    choices = cfg.hydra.runtime.choices if "hydra" in cfg else {}
    parts = []
    for key in missing:
        group, _, leaf = key.rpartition(".")
        choice = choices.get(group) if group else None
        yaml = conf_dir / group / f"{choice}.yaml" if choice else conf_dir / f"{config_name}.yaml"
        what = _yaml_comment(yaml, leaf)
        fetch = _fetch_hint(group, choice, leaf)
        text = f"{key} is required" + (f": {what}" if what else "")
        if fetch:
            text += f"; {fetch}"
        parts.append(text)
    return "; ".join(parts)


def _yaml_comment(path: Path, leaf: str) -> str | None:
    """The trailing comment of the ``leaf: ???`` line of ``path`` (the config's own description of the value)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    m = re.search(rf"^\s*{re.escape(leaf)}\s*:\s*\?\?\?\s*#\s*(.+?)\s*$", text, re.MULTILINE)
    return m.group(1) if m else None


def _fetch_hint(group: str, choice: str | None, leaf: str) -> str | None:
    """For a data set folder left out: ``anonlab datasets fetch NAME`` where that command knows the data set."""
    if group != "dataset" or choice is None:
        return None
    from anonlab.datasets.fetch import SOURCES

    name = leaf[: -len("_root")] if leaf.endswith("_root") else choice  # composite: pennfudan_root
    if name not in SOURCES:
        return None
    return f"`anonlab datasets fetch {name}` downloads it and prints the path to give as {group}.{leaf}"


def _unresolved(cfg: DictConfig) -> str | None:
    """An interpolation of the job's config (``${...}``) that does not resolve. ``${hydra:...}`` needs the running
    job's Hydra state and is left to Hydra."""
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    for key, node in _leaves(job):
        if node._is_interpolation() and "${hydra:" in str(node._value()):
            continue
        try:
            OmegaConf.select(job, key, throw_on_resolution_failure=True)
        except OmegaConfBaseException as e:
            if "HydraConfig was not set" in str(e):  # a ${hydra:...} reached through another interpolation
                continue
            return _omegaconf_line(e)
    return None


def _leaves(node, prefix: str = ""):
    """``(dotted key, node)`` of every leaf below a DictConfig (lists and interpolations are leaves)."""
    for k in node.keys():
        full = f"{prefix}.{k}" if prefix else str(k)
        child = node._get_node(k)
        if isinstance(child, DictConfig) and not child._is_interpolation() and not child._is_missing():
            yield from _leaves(child, full)
        else:
            yield full, child
