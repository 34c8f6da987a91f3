"""Every mgiad network as a timm model: ``timm.create_model('mgiad_3lvl', num_classes=..., ...)``,
and every published weight in timm's listing: ``timm.list_models('mgiad*', pretrained=True)``.

Names: the registered name where it starts with ``mgiad``, else ``mgiad_`` + name
(``mgiad_resnet20``, ``mgiad_mgnet_ab``), so that no timm model (timm's ``resnet18``) is
replaced; published weights are ``name.tag`` (``mgiad_resnet20.cifar10``), their cfgs made by
timm's ``generate_default_cfgs`` from :func:`mgiad.models.pretrained.published_cfg` (the first
tag of a model is its default, as in timm). The entry points call :func:`mgiad.create_model`,
which takes timm's arguments (``pretrained``, ``pretrained_cfg``, ``pretrained_cfg_overlay``,
``in_chans``, ``num_classes``, ``features_only``, ``out_indices``, ``feature_cls``, ``drop_rate``,
``global_pool``) and reads the published weights at call time. Registered on ``import mgiad``
when timm is installed (``mgiad/_timm.py``); needs ``pip install 'mgiad[timm]'``. docs/timm.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn
from timm.models import generate_default_cfgs
from timm.models import register_model as timm_register

from .classifier import data_cfg
from .pretrained import PUBLISHED, published_cfg
from .registry import create_model, list_models, model_defaults, model_doc, timm_name


def _entrypoint(name: str) -> Callable[..., nn.Module]:
    def build(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return create_model(name, pretrained=pretrained, **kwargs)

    build.__name__ = build.__qualname__ = timm_name(name)
    build.__module__ = __name__
    build.__doc__ = model_doc(name)
    return build


def _default_cfgs() -> dict[str, Any]:
    """timm's cfgs: ``name.tag`` for each published weight; for a model without any, its default
    cfg (no weights: absent from ``list_models(pretrained=True)``)."""
    cfgs: dict[str, dict[str, Any]] = {}
    for key in PUBLISHED:
        arch, _, tag = key.partition(".")
        cfgs[f"{timm_name(arch)}.{tag}"] = published_cfg(key)
    published = {key.partition(".")[0] for key in PUBLISHED}
    for name in list_models():
        if name not in published:
            cfg = data_cfg(model_defaults(name).get("in_chans", 3), 10, timm_name(name))
            cfg["description"] = model_doc(name)
            cfgs[timm_name(name)] = cfg
    return generate_default_cfgs(cfgs)


#: read by timm's ``register_model`` (it looks up ``default_cfgs`` in the entry point's module)
default_cfgs = _default_cfgs()


def register_all() -> list[str]:
    """Register every mgiad model with timm (idempotent); returns the timm names."""
    import timm

    names = []
    known = set(timm.list_models("mgiad*"))
    for name in list_models():
        names.append(timm_name(name))
        if timm_name(name) not in known:
            globals()[timm_name(name)] = timm_register(_entrypoint(name))
    return names


REGISTERED = register_all()
