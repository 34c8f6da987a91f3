"""Augmentation by name: the named policies and the per-data-set recipes (``--augment=NAME``).

No torch here, so that a run configuration is checked without loading it.

Where each recipe comes from (evidence: docs/paper-notes.md §5):

- The paper names no augmentation: its text has no "augment", "crop" or "flip".
- ``authors`` (the default): the authors' public MgNet code, vanbetteray/Poly-MgNet,
  ``data_loader/data_reader.py``, which produced the paper's numbers. CIFAR-10: ``RandomCrop(32,
  padding=4, fill=128)``, flip and their PIL ``CIFAR10Policy`` with grey fill
  (``Cifar10DataReader``); CIFAR-100: flip and ``RandomCrop(32, padding=4,
  padding_mode="reflect")`` (``Cifar100DataReader``); FashionMNIST: none
  (``FashionMNISTDataReader``).
- ``torchvision``: the same, but torchvision's ``AutoAugment(CIFAR10)`` with zero fill and a
  zero-padded crop on CIFAR-10. This package's default until 2026-12-07, when it was called
  ``paper``; ``paper`` is still read (old run directories, records and scripts) as this recipe.
"""

from __future__ import annotations

#: Named policies, as :class:`mgiad.data.augment.BatchAugment` arguments.
POLICIES: dict[str, dict] = {
    # normalisation only
    "none": {},
    # RandomCrop(H, padding=4) with zeros + horizontal flip
    "crop-flip": {"crop": 4, "flip": True},
    # the same with reflect padding (the authors' CIFAR-100 recipe)
    "crop-flip-reflect": {"crop": 4, "pad_mode": "reflect", "flip": True},
    # crop (zeros) + flip + torchvision's AutoAugment(CIFAR10), zero fill
    "autoaugment-cifar10": {"crop": 4, "flip": True, "autoaugment": True},
    # the authors' code: crop with grey 128 + flip + their PIL CIFAR10Policy, grey fill
    "autoaugment-cifar10-authors": {"crop": 4, "crop_fill": 128, "flip": True,
                                    "autoaugment": True, "policy": "authors"},
}

#: Per-data-set recipes: the policy each one picks for each data set.
RECIPES: dict[str, dict[str, str]] = {
    "authors": {"cifar10": "autoaugment-cifar10-authors", "cifar100": "crop-flip-reflect",
                "fashionmnist": "none"},
    "torchvision": {"cifar10": "autoaugment-cifar10", "cifar100": "crop-flip-reflect",
                    "fashionmnist": "none"},
}

#: Old recipe names still read: name -> the recipe it always meant.
LEGACY_RECIPES: dict[str, str] = {"paper": "torchvision"}

#: Every accepted ``augment`` value.
AUGMENT_MODES: tuple[str, ...] = (*RECIPES, *POLICIES, *LEGACY_RECIPES)


def recipe_policy(augment: str, dataset: str) -> str | None:
    """The policy that ``augment`` means on ``dataset`` (a canonical name such as ``cifar10``).

    A policy name means itself; a recipe (``authors``, ``torchvision``, the old ``paper``) means
    its choice for the data set, or ``None`` for data it has no choice for (your own data).
    Raises ``ValueError`` for an unknown name.
    """
    if augment in POLICIES:
        return augment
    recipe = RECIPES.get(LEGACY_RECIPES.get(augment, augment))
    if recipe is None:
        raise ValueError(f"unknown augmentation {augment!r}; expected one of {', '.join(AUGMENT_MODES)}")
    return recipe.get(dataset.lower().replace("-", "").replace("_", ""))
