"""The paper's networks and their registered variants."""

from .mgic import MGIC
from .multigrid import MGiaD, MgNet, MultigridNet
from .registry import register_model
from .resnet import RESNET18, RESNET20, ResNet

__all__ = ["MGIC", "MGiaD", "MgNet", "MultigridNet", "ResNet"]

# Baselines (Tables I–IX).
register_model("resnet18", ResNet, "ResNet18, CIFAR variant (3x3 stem, no max-pool), 11.2M weights", **RESNET18)
register_model("resnet18_maxpool", ResNet, "ResNet18 as in the authors' code: 3x3 stem + max-pool", **RESNET18, maxpool=True)
register_model("resnet20", ResNet, "ResNet20 with option-A shortcuts, 270k weights", **RESNET20)
register_model("mgnet_ab", MgNet, "MgNet_{A,B}, 4 levels [64,128,256,256], nu=2 (ResNet18-size)", levels=4, share_B=True)
register_model("mgnet_a", MgNet, "MgNet_A (one B per step), 4 levels, nu=2", levels=4, share_B=False)
register_model("mgnet_ab_3lvl", MgNet, "MgNet_{A,B}, 3 levels [16,32,64], nu=3 (ResNet20-size)", levels=3, share_B=True)
register_model("mgnet_a_3lvl", MgNet, "MgNet_A, 3 levels [16,32,64], nu=3", levels=3, share_B=False)
register_model("mgnet_ab_grouped", MgNet, "MgNet_{A,B} with grouped A, B (Table VI), g_s=32", levels=4, g_s=32)

# MGiaD (Algorithm 3).
register_model("mgiad", MGiaD, "MGiaD, 4 levels, c_K=64, g_s=4, lam=1 (393k weights on CIFAR-10)", c_K=64, g_s=4, lam=1)
register_model("mgiad_3lvl", MGiaD, "MGiaD, 3 levels [16,32,64], c_K=16, g_s=8", levels=3, c_K=16, g_s=8)
register_model("mgiad_fmnist", MGiaD, "MGiaD FashionMNIST variant (no BN in Pi/R), 1 input channel", c_K=64, g_s=4, in_chans=1, transfer_norm=False)
register_model("mgiad_3lvl_fmnist", MGiaD, "3-level MGiaD FashionMNIST variant, c_K=16, g_s=8 (Table IV, 37k)", levels=3, c_K=16, g_s=8, in_chans=1, transfer_norm=False)
register_model("mgiad_ck32_gs8", MGiaD, "MGiaD, c_K=32, g_s=8, lam=1 (ResNet20's weight count: 274k on CIFAR-10)", c_K=32, g_s=8, lam=1)
register_model("mgiad_large", MGiaD, "MGiaD, c_K=64, g_s=8, lam=3 (best CIFAR-10 row, 1.27M weights)", c_K=64, g_s=8, lam=3)

# MGIC (Figure 7).
register_model("mgic", MGIC, "ResNet18-size MGIC (Eliasof et al. 2020), g=8, c_K=32", widths=(64, 128, 256, 256), blocks=2, g=8, c_K=32)
register_model("mgic_3lvl", MGIC, "ResNet20-size MGIC, g=4, c_K=8", widths=(16, 32, 64), blocks=3, g=4, c_K=8)
