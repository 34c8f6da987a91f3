"""Every mgiad network as a timm model: ``timm.create_model('mgiad_3lvl', num_classes=..., ...)``.

Names: the registered name where it starts with ``mgiad``, else ``mgiad_`` + name
(``mgiad_resnet20``, ``mgiad_mgnet_ab``), so that no timm model (timm's ``resnet18``) is
replaced. The entry points call :func:`mgiad.create_model`, which takes timm's arguments
(``pretrained``, ``drop_rate``, ``global_pool``, ``pretrained_cfg_overlay``, ...). Registered on
``import mgiad`` when timm is installed (``mgiad/_timm.py``); needs ``pip install 'mgiad[timm]'``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn
from timm.models import register_model as timm_register

from .registry import create_model, list_models, model_doc


def timm_name(name: str) -> str:
    return name if name.startswith("mgiad") else f"mgiad_{name}"


def _entrypoint(name: str) -> Callable[..., nn.Module]:
    def build(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return create_model(name, pretrained=pretrained, **kwargs)

    build.__name__ = build.__qualname__ = timm_name(name)
    build.__module__ = __name__
    build.__doc__ = model_doc(name)
    return build


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
