"""Model registry: ``create_model(name, **kwargs)`` and ``list_models()``.

Names map to factory functions; a variant name binds default hyper-parameters
(for example ``mgiad_ck16_gs8_3lvl``) that keyword arguments may still override.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_DOCS: dict[str, str] = {}


def register_model(
    name: str, factory: Callable[..., nn.Module], doc: str = "", **defaults: Any
) -> None:
    """Register ``factory`` under ``name`` with default keyword arguments.

    Raises ``ValueError`` if the name is taken: two models silently sharing a name would
    make results ambiguous.
    """
    if name in _MODELS:
        raise ValueError(f"model name {name!r} is already registered; pick another name")

    params = inspect.signature(factory).parameters
    accepted = sorted(n for n, p in params.items() if p.kind is p.KEYWORD_ONLY)
    unknown = sorted(set(defaults) - set(accepted))
    if unknown:
        raise ValueError(f"model {name!r}: defaults {unknown} are not arguments of {factory.__name__}")

    def build(**kwargs: Any) -> nn.Module:
        for key in kwargs:
            if key not in accepted:
                close = difflib.get_close_matches(key, accepted, n=2, cutoff=0.5)
                hint = f"did you mean {' or '.join(close)}? " if close else ""
                raise ValueError(
                    f"{name} has no hyper-parameter {key!r}; {hint}it accepts: {', '.join(accepted)}"
                )
        return factory(**{**defaults, **kwargs})

    build.__name__ = name
    build.defaults = dict(defaults)  # type: ignore[attr-defined]
    build.accepted = accepted  # type: ignore[attr-defined]
    build.factory = factory  # type: ignore[attr-defined]  (a class's registered name, hub.py)
    _MODELS[name] = build
    _DOCS[name] = doc or next(iter((factory.__doc__ or "").strip().splitlines()), "")


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def model_doc(name: str) -> str:
    """One-line description of a registered model."""
    _check_name(name)
    return _DOCS[name]


def model_defaults(name: str) -> dict[str, Any]:
    """The hyper-parameters a registered name binds."""
    _check_name(name)
    return dict(_MODELS[name].defaults)  # type: ignore[attr-defined]


def model_hyperparameters(name: str) -> list[str]:
    """The keyword arguments ``create_model(name, ...)`` accepts."""
    _check_name(name)
    return list(_MODELS[name].accepted)  # type: ignore[attr-defined]


def _check_name(name: str) -> None:
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown model name {name!r}{hint} (see `mgiad list` or mgiad.list_models())"
        )


def timm_name(name: str) -> str:
    """The model's name in timm: ``name`` where it starts with ``mgiad``, else ``mgiad_`` + name
    (``mgiad_resnet20``), so that no timm model (timm's ``resnet18``) is replaced."""
    return name if name.startswith("mgiad") else f"mgiad_{name}"


#: timm's arguments of ``create_model`` that the networks cannot honour
_UNSUPPORTED = {
    "drop_path_rate": "stochastic depth (drop_path_rate) does not apply to the multigrid smoothers",
    "drop_block_rate": "DropBlock (drop_block_rate) is not implemented",
}


def _cfg_dict(pretrained_cfg: Any) -> dict[str, Any]:
    if pretrained_cfg is None or isinstance(pretrained_cfg, dict):
        return dict(pretrained_cfg or {})
    if hasattr(pretrained_cfg, "to_dict"):  # timm's PretrainedCfg
        return dict(pretrained_cfg.to_dict())
    raise ValueError(f"pretrained_cfg must be a tag, a dict or timm's PretrainedCfg, got {pretrained_cfg!r}")


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    drop_rate: float = 0.0,
    global_pool: str | None = None,
    pretrained_cfg: Any = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    feature_cls: Any = None,
    **kwargs: Any,
) -> nn.Module:
    """Build the registered model ``name``; keyword arguments override its defaults.

    The timm arguments work as in ``timm.create_model`` (docs/timm.md): ``name.tag`` or
    ``pretrained_cfg='tag'`` picks published weights (their cfg: input size, normalisation,
    classes; ``num_classes`` and ``in_chans`` default to theirs), ``pretrained=True`` loads them
    (hash checked), or the file or state dict that ``pretrained_cfg_overlay`` / a
    ``pretrained_cfg`` dict names; a different ``in_chans`` adapts the first conv and a different
    ``num_classes`` gives a new classifier, as timm does. ``features_only=True`` returns timm's
    feature extractor (one map per resolution level; ``out_indices``, ``feature_cls``; needs timm).
    ``drop_rate`` is dropout before the classifier, ``global_pool`` must be ``'avg'``. An
    argument the networks cannot honour is an error.
    """
    name, _, tag = name.partition(".")  # timm's "model.tag": which published weights
    if isinstance(pretrained_cfg, str):  # timm.create_model passes the tag this way
        tag, pretrained_cfg = tag or pretrained_cfg, None
    given = {**_cfg_dict(pretrained_cfg), **_cfg_dict(pretrained_cfg_overlay)}
    _check_name(name)
    for key, why in _UNSUPPORTED.items():
        if kwargs.get(key):
            raise ValueError(f"{name}: {why}")
        kwargs.pop(key, None)
    kwargs.pop("cache_dir", None)  # timm passes it; the weights ship with the package
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    if not isinstance(drop_rate, (int, float)) or isinstance(drop_rate, bool) or not 0 <= drop_rate < 1:
        raise ValueError(f"drop_rate must be a number in [0, 1), got {drop_rate!r}")
    from .classifier import check_global_pool
    from .pretrained import PUBLISHED, SOURCES, load_pretrained, published_cfg, published_key

    check_global_pool(global_pool)
    if not tag and f"{name}.{given.get('tag')}" in PUBLISHED:  # a cfg dict of published weights
        tag = given["tag"]
    base = None  # the cfg of published weights: named by the tag, or the first of the model's
    if tag:
        base = published_cfg(published_key(name, tag))
    elif pretrained:
        key = next((k for k in PUBLISHED if k.partition(".")[0] == name), None)
        if key is not None:
            base = published_cfg(key)
        elif not any(given.get(k) for k in SOURCES):
            published_key(name)  # the error that lists what is published
    cfg = {**(base or {}), **given}
    # as timm: num_classes and in_chans default to those of the weights' cfg (or the cfg given)
    if (base or "num_classes" in given) and isinstance(cfg.get("num_classes"), int) and cfg["num_classes"] >= 0:
        kwargs.setdefault("num_classes", cfg["num_classes"])
    if (base or "input_size" in given) and cfg.get("input_size"):
        kwargs.setdefault("in_chans", cfg["input_size"][0])
    model = _MODELS[name](**kwargs)
    model.drop_rate = float(drop_rate)
    from .hub import record_config

    record_config(model, name, kwargs)  # the name and arguments that rebuild it (save_pretrained)
    if base is None and hasattr(model, "pretrained_cfg"):  # no published weights: the model's own
        cfg = {**model.pretrained_cfg, "architecture": timm_name(name), **given}
    if pretrained:
        load_pretrained(model, cfg, num_classes=0 if features_only else model.num_classes,
                        in_chans=model.in_chans)
    if cfg:
        model.pretrained_cfg = cfg
    if device is not None or dtype is not None:
        model = model.to(device=device, dtype=dtype)
    if features_only:
        return _feature_extractor(model, cfg, out_indices, feature_cls)
    if out_indices is not None or feature_cls is not None:
        raise ValueError(f"{name}: out_indices and feature_cls go with features_only=True")
    return model


def _feature_extractor(model: nn.Module, cfg: dict[str, Any], out_indices: Any, feature_cls: Any) -> nn.Module:
    """timm's feature extractor around ``model`` (what ``timm.create_model(features_only=True)``
    builds): ``FeatureListNet`` for ResNet and MGIC, ``FeatureGetterNet`` (``forward_intermediates``)
    for the multigrid networks, whose levels pass three tensors (f, u, A u) and so cannot run as a
    chain of modules."""
    try:
        from timm.models._features import (
            FeatureDictNet,
            FeatureGetterNet,
            FeatureHookNet,
            FeatureListNet,
        )
    except ImportError:
        raise ValueError("features_only=True returns timm's feature extractor: pip install "
                         "'mgiad[timm]' (or use model.forward_intermediates(x))") from None
    from .multigrid import MultigridNet

    chained = not isinstance(model, MultigridNet)
    kinds = {"list": FeatureListNet, "dict": FeatureDictNet, "hook": FeatureHookNet, "getter": FeatureGetterNet}
    cls = feature_cls or ("list" if chained else "getter")
    if isinstance(cls, str):
        if cls.lower() not in kinds:
            raise ValueError(f"feature_cls={feature_cls!r}: one of {', '.join(kinds)}")
        cls = kinds[cls.lower()]
    if out_indices is None:
        out_indices = tuple(range(len(model.feature_info)))
    elif not isinstance(out_indices, int):
        out_indices = tuple(out_indices)
    args: dict[str, Any] = {}
    if issubclass(cls, (FeatureListNet, FeatureDictNet)):
        if not chained:
            raise ValueError(f"feature_cls={feature_cls!r} runs the model as a chain of modules; the "
                             f"levels of {type(model).__name__} pass three tensors (f, u, A u): use "
                             "feature_cls='getter' (the default) or 'hook'")
        args["flatten_sequential"] = True
    elif issubclass(cls, FeatureHookNet):
        args["no_rewrite"] = True
    features = cls(model, out_indices=out_indices, **args)
    features.pretrained_cfg = {k: v for k, v in cfg.items() if k not in ("num_classes", "classifier", "global_pool")}
    features.default_cfg = features.pretrained_cfg
    features.in_chans = model.in_chans
    return features
