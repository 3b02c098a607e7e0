"""ResNet8 as in MLPerf Tiny image classification v0.5 (PyTorch port).

conv3x3/16 -> three residual stages (16, 32, 64 filters; the strided stages have a
1x1 conv shortcut) -> global average pool -> dense 10.  78,186 trainable parameters (plus BN running statistics).

The network takes raw pixels 0..255, NCHW float32.  During training the first conv
sees x/255; `fold_input_scale` moves that 1/255 into the first conv's weights before
export, which is exact (zero padding of x and of x/255 agree).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Stage(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=True)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=True)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=True) if stride != 1 else None

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = x if self.shortcut is None else self.shortcut(x)
        return F.relu(s + y)


class ResNet8(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.input_scale = 1.0 / 255.0
        self.conv0 = nn.Conv2d(3, 16, 3, 1, 1, bias=True)
        self.bn0 = nn.BatchNorm2d(16)
        self.stage1 = Stage(16, 16, 1)
        self.stage2 = Stage(16, 32, 2)
        self.stage3 = Stage(32, 64, 2)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        if self.input_scale != 1.0:
            x = x * self.input_scale
        x = F.relu(self.bn0(self.conv0(x)))
        x = self.stage3(self.stage2(self.stage1(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def fold_input_scale(model: ResNet8) -> None:
    """Multiply conv0's weights by input_scale and set input_scale to 1 (exact)."""
    with torch.no_grad():
        model.conv0.weight.mul_(model.input_scale)
    model.input_scale = 1.0
