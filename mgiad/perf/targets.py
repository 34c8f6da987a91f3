"""The models ``mgiad bench`` measures by default, without torch (the command's ``--help`` shows
them; :mod:`mgiad.perf.bench` loads torch)."""

#: The comparisons of the performance targets (docs/performance.md): the ResNet18-size
#: networks against ResNet18, the 3-level MGiaD against ResNet20.
DEFAULT_MODELS = ["resnet18", "mgiad", "mgiad:c_K=16,g_s=4", "mgiad:c_K=16,g_s=4,memory_efficient=True",
                  "resnet20", "mgiad_3lvl"]
DEFAULT_BASELINES = ["resnet18", "resnet20"]
