"""Model registry: ``create_model(name, **kwargs)`` and ``list_models()``.

Names map to factory functions; a variant name binds default hyper-parameters
(for example ``mgiad_ck16_gs8_3lvl``) that keyword arguments may still override.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
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


#: timm's arguments of ``create_model`` that the networks cannot honour
_UNSUPPORTED = {
    "features_only": "feature pyramids (features_only=True) are not implemented; use "
                     "model.forward_features(x) for the last feature map",
    "drop_path_rate": "stochastic depth (drop_path_rate) does not apply to the multigrid smoothers",
    "drop_block_rate": "DropBlock (drop_block_rate) is not implemented",
}


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    drop_rate: float = 0.0,
    global_pool: str | None = None,
    pretrained_cfg: Any = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build the registered model ``name``; keyword arguments override its defaults.

    The timm arguments work as in ``timm.create_model``: ``pretrained`` loads the published
    weights (hash checked; a new classifier when ``num_classes`` differs), ``drop_rate`` is
    dropout before the classifier, ``global_pool`` must be ``'avg'``, ``pretrained_cfg_overlay``
    updates ``model.pretrained_cfg``. An argument the networks cannot honour is an error.
    """
    name, _, tag = name.partition(".")  # timm's "model.tag": which published weights
    if isinstance(pretrained_cfg, str):  # timm.create_model passes the tag this way
        tag, pretrained_cfg = tag or pretrained_cfg, None
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

    check_global_pool(global_pool)
    if pretrained:  # the published weights' input channels unless asked otherwise (then refused)
        from .pretrained import published_in_chans

        published = published_in_chans(name, tag or None)
        if kwargs.get("in_chans") is None and published is not None:
            kwargs["in_chans"] = published
    model = _MODELS[name](**kwargs)
    model.drop_rate = float(drop_rate)
    cfg = dict(model.pretrained_cfg) if hasattr(model, "pretrained_cfg") else {}
    if pretrained:
        from .pretrained import load_pretrained

        cfg.update(load_pretrained(model, name, num_classes=kwargs.get("num_classes"),
                                   in_chans=kwargs.get("in_chans"), tag=tag or None))
    elif tag:
        raise ValueError(f"{name}.{tag}: a tag names published weights; pass pretrained=True")
    if isinstance(pretrained_cfg, dict):
        cfg.update(pretrained_cfg)
    cfg.update(pretrained_cfg_overlay or {})
    if cfg:
        model.pretrained_cfg = cfg
    if device is not None or dtype is not None:
        model = model.to(device=device, dtype=dtype)
    return model
