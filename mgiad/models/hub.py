"""Hugging Face style saving and loading: every network records the config that rebuilds it.

``model.save_pretrained(dir)`` writes ``dir/config.json`` and ``dir/model.safetensors`` (the plain
state dict), ``Class.from_pretrained(dir or "owner/name")`` reads them back and
``model.push_to_hub("owner/name")`` uploads them: the interface of huggingface_hub's
``PyTorchModelHubMixin``, implemented here because the mixin would make huggingface_hub a
dependency of ``import mgiad`` (it is the optional extra ``mgiad[hub]``, needed only to talk to
the Hub), and its ``from_pretrained`` builds the class it is called on from the config's keys,
where mgiad's folders name a registered model (so that the functional :func:`from_pretrained`
needs no class). The layout is the mixin's and the older ``mgiad.save_pretrained``'s.

Where the config comes from: :func:`mgiad.create_model` (and so timm) records the registered name
and the keyword arguments given; a network built from its class (``MGiaD(c_K=16)``) records its
constructor arguments. The config also carries what the model is now (``num_classes`` after
``reset_classifier``, ``drop_rate``, the data part of ``pretrained_cfg``: input size, mean, std,
class names). Every save checks that the config rebuilds the model: the same class with the same
constructor arguments, the same ``num_classes``/``in_chans`` and the same state-dict keys and
shapes; otherwise nothing is written.

Loading executes nothing from the folder: the config names a registered model and its
hyper-parameters (nothing else is accepted), the weights are safetensors.
"""

from __future__ import annotations

import functools
import inspect
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

__all__ = ["HubMixin", "from_pretrained", "model_config", "push_to_hub", "save_pretrained"]

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
HUB_EXTRA = "pip install 'mgiad[hub]'"
#: The top-level keys of config.json (older folders have the first eight).
CONFIG_KEYS = ("model", "model_kwargs", "num_classes", "in_chans", "input_size", "mean", "std",
               "classes", "drop_rate", "pretrained_cfg")
#: The part of a pretrained cfg that describes the data (what timm's pipeline reads). Weight
#: sources (file, url, hf_hub_id, state_dict) are left out: the weights are in the folder.
DATA_CFG_KEYS = ("input_size", "mean", "std", "label_names", "interpolation", "crop_pct",
                 "crop_mode", "pool_size", "first_conv", "classifier", "architecture")
#: Constructor arguments that change how a model computes its gradients, not what it computes
RUNTIME_ARGS = ("memory_efficient",)


class HubMixin:
    """``save_pretrained``, ``from_pretrained``, ``push_to_hub`` and ``config`` for a network
    (part of :class:`mgiad.models.classifier.ClassifierMixin`). Records the constructor's
    arguments when the network is created, as ``PyTorchModelHubMixin`` does."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        self = super().__new__(cls)
        params = _init_parameters(cls)
        try:
            bound = params.bind(*args, **kwargs)
        except TypeError:  # __init__ raises the error that names the argument
            return self
        bound.apply_defaults()
        # into __dict__ directly: nn.Module.__init__ has not run yet
        self.__dict__["_init_kwargs"] = dict(bound.arguments)
        return self

    @property
    def config(self) -> dict[str, Any]:
        """What ``config.json`` holds for this model (:func:`model_config`)."""
        return model_config(self)  # type: ignore[arg-type]

    def save_pretrained(self, save_directory: str | Path, *, config: dict[str, Any] | None = None,
                        push_to_hub: bool = False, repo_id: str | None = None,
                        **push_to_hub_kwargs: Any) -> str | None:
        """Write ``save_directory/config.json`` and ``model.safetensors`` (:func:`save_pretrained`;
        ``config`` is checked against the model); with ``push_to_hub=True`` also upload them to
        ``repo_id`` (default: the folder's name) and return the commit's URL, as
        huggingface_hub's mixin does."""
        save_pretrained(self, save_directory, config)  # type: ignore[arg-type]
        if push_to_hub:
            return self.push_to_hub(repo_id or Path(save_directory).name, config=config,
                                    **push_to_hub_kwargs)
        return None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *,
                        revision: str | None = None, device: str | torch.device | None = None,
                        map_location: str | torch.device | None = None, **hub_kwargs: Any) -> Any:
        """The model of a saved folder or Hub repository (:func:`from_pretrained`), which must be
        a ``cls``; ``map_location`` is huggingface_hub's name of ``device``."""
        if device is not None and map_location is not None:
            raise ValueError("give device or map_location (the same thing), not both")
        model = from_pretrained(pretrained_model_name_or_path, revision=revision,
                                device=device or map_location or "cpu", **hub_kwargs)
        if not isinstance(model, cls):
            raise ValueError(f"{pretrained_model_name_or_path} holds a {type(model).__name__} "
                             f"({model_config(model)['model']}), not a {cls.__name__}: load it with "
                             f"mgiad.from_pretrained(...) or {type(model).__name__}.from_pretrained(...)")
        return model

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload ``config.json``, ``model.safetensors`` and a model card to the Hub repository
        ``repo_id`` (:func:`push_to_hub`); returns the commit's URL."""
        return push_to_hub(self, repo_id, **kwargs)  # type: ignore[arg-type]


@functools.cache
def _init_parameters(cls: type) -> inspect.Signature:
    sig = inspect.signature(cls.__init__)
    return sig.replace(parameters=list(sig.parameters.values())[1:])  # without self


# -- the config ------------------------------------------------------------------------------


def record_config(model: nn.Module, name: str, kwargs: dict[str, Any]) -> None:
    """Called by :func:`mgiad.create_model`: the registered name and the arguments given (the
    name's defaults are its own), which are what a user reads in config.json."""
    model.__dict__["_mgiad_config"] = {
        "model": name,
        "model_kwargs": {k: v for k, v in kwargs.items() if k not in ("num_classes", "in_chans")}}


def _registered_name(cls: type) -> str | None:
    """The first registered name built by ``cls`` itself (``mgiad`` for MGiaD)."""
    from .registry import _MODELS

    return next((n for n, build in _MODELS.items() if getattr(build, "factory", None) is cls), None)


def _jsonable(value: Any, what: str) -> Any:
    """``value`` as JSON reads it back (tuples become lists), or an error naming ``what``."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} cannot be written to config.json ({e}); use numbers, strings, "
                         "booleans and lists") from None


def model_config(model: nn.Module) -> dict[str, Any]:
    """The config.json of ``model``: ``model`` (a registered name), ``model_kwargs``,
    ``num_classes``, ``in_chans``, ``drop_rate``, ``input_size`` (image side), ``mean``, ``std``,
    ``classes`` and the data part of ``pretrained_cfg``, as the model is now.

    Raises ``ValueError`` for a model that records none (not built by ``mgiad.create_model``,
    timm, or a class registered with mgiad)."""
    from .registry import model_hyperparameters

    recorded = model.__dict__.get("_mgiad_config")
    if recorded is None:
        init = model.__dict__.get("_init_kwargs")
        name = _registered_name(type(model))
        if init is None or name is None:
            raise ValueError(
                f"{type(model).__name__} records no config (it was not built by mgiad.create_model, "
                "timm.create_model or a network class of mgiad.models); pass one: "
                "save_pretrained(model, dir, {'model': NAME, 'model_kwargs': {...}, "
                "'num_classes': N, 'in_chans': C})")
        recorded = {"model": name, "model_kwargs": {
            k: v for k, v in init.items() if k not in ("num_classes", "in_chans")}}
    name, kwargs = recorded["model"], dict(recorded["model_kwargs"])
    for arg in RUNTIME_ARGS:  # set_grad_checkpointing may have changed it since
        if arg in model_hyperparameters(name) and (arg in kwargs or getattr(model, arg, False)):
            kwargs[arg] = bool(getattr(model, arg))
    cfg = {"model": name, "model_kwargs": _jsonable(kwargs, f"{name}'s model_kwargs"),
           "num_classes": int(model.num_classes), "in_chans": int(model.in_chans),
           "drop_rate": float(getattr(model, "drop_rate", 0.0))}
    return _with_data_cfg(cfg, getattr(model, "pretrained_cfg", None) or {})


def _with_data_cfg(cfg: dict[str, Any], pretrained_cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with the data part of ``pretrained_cfg``, the top-level ``input_size``, ``mean``,
    ``std``, ``classes`` of ``cfg`` taking precedence (and written into it)."""
    data = {k: pretrained_cfg[k] for k in DATA_CFG_KEYS if pretrained_cfg.get(k) is not None}
    if cfg.get("input_size") is not None:  # the image side (older configs), or C, H, W
        size = cfg["input_size"]
        data["input_size"] = tuple(size) if isinstance(size, (list, tuple)) else \
            (cfg["in_chans"], int(size), int(size))
    for top, key in (("mean", "mean"), ("std", "std"), ("classes", "label_names")):
        if cfg.get(top) is not None:
            data[key] = cfg[top]
    data = _jsonable(data, "pretrained_cfg")
    out = dict(cfg, pretrained_cfg=data)
    if data.get("input_size"):
        out["input_size"] = data["input_size"][-1]
    for top, key in (("mean", "mean"), ("std", "std"), ("classes", "label_names")):
        if data.get(key) is not None:
            out[top] = data[key]
    return out


def _check_config(config: Any, where: str) -> tuple[str, dict[str, Any]]:
    """The registered name and ``create_model`` arguments of a config, or a ValueError: only a
    registered name and its hyper-parameters are accepted (no weight files, no timm switches)."""
    from .registry import _check_name, model_hyperparameters

    if not isinstance(config, dict):
        raise ValueError(f"{where}: not an mgiad config (a JSON object with model, num_classes, "
                         "in_chans)")
    missing = [k for k in ("model", "num_classes", "in_chans") if k not in config]
    if missing:
        raise ValueError(f"{where}: not an mgiad config, it lacks {', '.join(missing)} (expected "
                         "model, model_kwargs, num_classes, in_chans)")
    name, kwargs = config["model"], config.get("model_kwargs") or {}
    if not isinstance(name, str) or not isinstance(kwargs, dict):
        raise ValueError(f"{where}: model must be a name and model_kwargs an object")
    try:
        _check_name(name)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    allowed = set(model_hyperparameters(name))
    unknown = sorted(set(kwargs) - allowed - {"drop_rate"})
    if unknown:
        raise ValueError(f"{where}: model_kwargs {unknown} are not hyper-parameters of {name} "
                         f"(it accepts: {', '.join(sorted(allowed))})")
    args = dict(kwargs, num_classes=config["num_classes"], in_chans=config["in_chans"])
    if config.get("drop_rate") is not None:
        args["drop_rate"] = config["drop_rate"]
    return name, args


def check_rebuilds(model: nn.Module, config: dict[str, Any], *, given: bool = True) -> None:
    """A ValueError unless ``config`` builds ``model``'s network: the same class and constructor
    arguments (where the model recorded them), ``num_classes``, ``in_chans``, ``drop_rate``, and
    the same state-dict keys and shapes. Builds on the meta device: no memory, no time.
    ``given``: the config was written by hand (the error's advice differs)."""
    from .registry import create_model

    name, args = _check_config(config, "save_pretrained")
    fix = ("; call save_pretrained(model, dir) without a config (the model records its own), or "
           "give the model_kwargs it was built with") if given else (
        "; the model was changed after it was built (prune_intermediate_layers, replaced layers), "
        "and no registered model rebuilds it: save its state_dict() with safetensors instead")
    try:
        with torch.device("meta"):
            built = create_model(name, **args)
    except (ValueError, TypeError) as e:
        raise ValueError(f"save_pretrained: the config cannot build a model ({e}){fix}") from None
    said = f"the config ({name} with {config.get('model_kwargs') or {}})"
    if type(built) is not type(model):
        raise ValueError(f"save_pretrained: {said} builds a {type(built).__name__}, the model is a "
                         f"{type(model).__name__}{fix}")
    own, new = model.__dict__.get("_init_kwargs"), built.__dict__.get("_init_kwargs")
    if own is not None and new is not None:
        skip = ("num_classes", "in_chans", *RUNTIME_ARGS)
        a, b = (_jsonable({k: v for k, v in d.items() if k not in skip}, "constructor arguments")
                for d in (own, new))
        diff = [f"{k}={b.get(k)!r} (the model has {a.get(k)!r})" for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k)]
        if diff:
            raise ValueError(f"save_pretrained: {said} builds {', '.join(diff)}{fix}")
    for key in ("num_classes", "in_chans", "drop_rate"):
        value = getattr(model, key, 0.0 if key == "drop_rate" else None)
        if key in args and args[key] != value:
            raise ValueError(f"save_pretrained: the config has {key}={args[key]!r}, the model "
                             f"{value!r}{fix}")
    have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = {k: tuple(v.shape) for k, v in built.state_dict().items()}
    if have != want:
        extra, lacking = sorted(set(have) - set(want)), sorted(set(want) - set(have))
        shapes = [f"{k}: {want[k]} vs the model's {have[k]}" for k in sorted(have)
                  if k in want and want[k] != have[k]]
        parts = ([f"the model has {len(extra)} weights it lacks (e.g. {', '.join(extra[:3])})"]
                 if extra else []) + ([f"it has {len(lacking)} the model lacks (e.g. "
                                       f"{', '.join(lacking[:3])})"] if lacking else []) + \
                ([f"{len(shapes)} of another shape (e.g. {'; '.join(shapes[:2])})"] if shapes else [])
        raise ValueError(f"save_pretrained: {said} does not build the model's weights: "
                         f"{', '.join(parts)}{fix}")


# -- save, load, push ------------------------------------------------------------------------


def save_pretrained(model: nn.Module, directory: str | Path,
                    config: dict[str, Any] | None = None) -> Path:
    """Write ``directory/model.safetensors`` (the plain state dict) and ``directory/config.json``
    (:data:`CONFIG_KEYS`): the layout of the Hugging Face Hub, readable without mgiad.

    ``config`` defaults to the model's own (:func:`model_config`). A config given by hand (the
    older API; its ``mean``/``std``/``classes``/``input_size`` override the model's) must rebuild
    the model (:func:`check_rebuilds`); otherwise nothing is written. Needs no huggingface_hub."""
    from safetensors.torch import save_file

    if config is None:
        cfg = model_config(model)
    else:
        if not isinstance(config, dict):
            raise ValueError(f"save_pretrained: config must be a dict, got {type(config).__name__}")
        try:
            own = model_config(model)
        except ValueError:  # a model without a record: the config given is all there is
            own = {"drop_rate": float(getattr(model, "drop_rate", 0.0)), "pretrained_cfg": {}}
        given = {k: config[k] for k in CONFIG_KEYS if config.get(k) is not None}
        base = {k: v for k, v in own.items() if k not in given and k != "pretrained_cfg"}
        if "model" in given:  # the kwargs go with the name: none given means the name's defaults
            base.pop("model_kwargs", None)
        missing = [k for k in ("model", "num_classes", "in_chans") if k not in {**base, **given}]
        if missing:
            raise ValueError(f"save_pretrained: config lacks {', '.join(missing)}")
        cfg = _with_data_cfg({**base, **given}, {**own["pretrained_cfg"],
                                                   **(config.get("pretrained_cfg") or {})})
        cfg["model_kwargs"] = _jsonable(cfg.get("model_kwargs") or {}, "model_kwargs")
    check_rebuilds(model, cfg, given=config is not None)
    from mgiad import __version__

    cfg = {**{k: cfg[k] for k in CONFIG_KEYS if k in cfg}, "library": "mgiad",
           "mgiad_version": __version__}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    (directory / CONFIG_NAME).write_text(json.dumps(cfg, indent=2) + "\n")
    return directory


def _is_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


def from_pretrained(directory: str | Path, *, device: str | torch.device = "cpu",
                    revision: str | None = None, **hub_kwargs: Any) -> nn.Module:
    """The model of a :func:`save_pretrained` folder, in eval mode, with its ``drop_rate`` and
    ``pretrained_cfg`` (no code is executed: the config names a registered model, the weights
    are safetensors).

    ``directory`` may also be a Hugging Face Hub repository id (``owner/name``, fetched with
    huggingface_hub, the ``hub`` extra) when no such local folder exists; ``hub_kwargs``
    (``token``, ``cache_dir``, ``force_download``, ``local_files_only``) go to its download.
    """
    from safetensors.torch import load_file

    from .registry import create_model

    directory = Path(directory)
    if not directory.exists():
        if not _is_hub_id(str(directory)):
            raise ValueError(f"{directory}: no such folder (nor a Hugging Face Hub id owner/name)")
        directory = _hub_download(str(directory), revision, **hub_kwargs)
    elif hub_kwargs:
        raise ValueError(f"{', '.join(sorted(hub_kwargs))}: for a Hub repository, and {directory} "
                         "is a local folder")
    config_file, weights_file = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for f in (config_file, weights_file):
        if not f.is_file():
            raise ValueError(f"{directory} is not a saved mgiad model: {f.name} is missing")
    try:
        cfg = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{config_file}: not an mgiad config (not JSON: {e})") from None
    name, args = _check_config(cfg, str(config_file))
    try:
        model = create_model(name, **args)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{config_file}: this mgiad cannot build {name} with "
                         f"{cfg.get('model_kwargs')}: {e}") from None
    stored = cfg.get("pretrained_cfg")
    if isinstance(stored, dict):
        stored = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()
                  if k in DATA_CFG_KEYS}
        model.pretrained_cfg = {**model.pretrained_cfg, **stored}
    try:
        state = load_file(str(weights_file))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"{weights_file}: unreadable safetensors file ({e})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{weights_file} does not fit {name} with {cfg.get('model_kwargs')}: "
                         f"{str(e).splitlines()[0]}") from None
    return model.to(device).eval()


def _hub(name: str, needed_for: str) -> Any:
    """``huggingface_hub.<name>``, or a ValueError naming the extra to install."""
    try:
        import huggingface_hub
    except ImportError:
        raise ValueError(f"{needed_for} needs huggingface_hub: {HUB_EXTRA}") from None
    return getattr(huggingface_hub, name)


def _hub_download(repo_id: str, revision: str | None, **hub_kwargs: Any) -> Path:
    """The repository's config.json and model.safetensors, through the Hub's local cache."""
    download = _hub("snapshot_download", f"{repo_id!r} is not a local folder, and loading it "
                    "from the Hugging Face Hub")
    return Path(download(repo_id, revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME],
                         **hub_kwargs))


def _model_card(repo_id: str, cfg: dict[str, Any]) -> str:
    kwargs = ", ".join(f"{k}={v!r}" for k, v in cfg["model_kwargs"].items())
    return (f"---\nlibrary_name: mgiad\ntags:\n- mgiad\n- image-classification\n---\n\n# {repo_id}\n\n"
            f"An [mgiad](https://arxiv.org/abs/2211.05525) `{cfg['model']}` network "
            f"({kwargs or 'its defaults'}) for {cfg['num_classes']} classes and {cfg['in_chans']} "
            "input channels.\n\n```python\nimport mgiad\n\n"
            f"model = mgiad.from_pretrained({repo_id!r})  # pip install 'mgiad[hub]'\n```\n")


def push_to_hub(model: nn.Module, repo_id: str, *, config: dict[str, Any] | None = None,
                commit_message: str = "Push model using mgiad", private: bool | None = None,
                token: str | None = None, branch: str | None = None, create_pr: bool | None = None,
                model_card: bool = True) -> str:
    """Upload ``config.json``, ``model.safetensors`` and (``model_card``) a README.md to the
    Hub repository ``repo_id``, created if missing (huggingface_hub's ``HfApi``; ``branch`` is
    its ``revision``). The folder is written and checked first: a config that does not rebuild
    the model uploads nothing. Returns the commit's URL."""
    api = _hub("HfApi", "push_to_hub")(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, config)
        if model_card:
            cfg = json.loads((Path(tmp) / CONFIG_NAME).read_text())
            (Path(tmp) / "README.md").write_text(_model_card(repo_id, cfg))
        repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=True).repo_id
        return api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=tmp,
                                 commit_message=commit_message, revision=branch,
                                 create_pr=create_pr)
