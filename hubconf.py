"""torch.hub entry points: ``torch.hub.load("<this repo>", "mgiad_3lvl", source="local")``.

Every registered model, with :func:`mgiad.create_model`'s arguments (``num_classes``,
``in_chans``, hyper-parameters, ``pretrained``, ``drop_rate``).
"""

dependencies = ["torch", "torchvision", "numpy", "safetensors"]

import mgiad as _mgiad  # noqa: E402


def _entry(name):
    def load(pretrained=False, **kwargs):
        return _mgiad.create_model(name, pretrained=pretrained, **kwargs)

    load.__name__ = load.__qualname__ = name
    load.__doc__ = _mgiad.model_doc(name)
    return load


for _name in _mgiad.list_models():
    globals()[_name] = _entry(_name)
