"""Bring your own model: a torchvision-style ResNet, your own data and training loop, handed to ifscope.

    in Python:               python -c "import ifscope.recipes as r; print(r.load_recipe('examples/byom_cnn.py:make'))"
    from the command line:   ifscope <command> --recipe examples/byom_cnn.py:make

A recipe is any function returning ``ifscope.recipes.Recipe(model, task, train, test, info)``. The model below
follows torchvision's ``resnet`` layout (``conv1``/``bn1``/``layer1..4``/``fc``, ``BasicBlock``); torchvision's
own ``resnet18(num_classes=...)`` plugs in the same way.
"""

from __future__ import annotations

import torch
from torch import nn

import ifscope
from ifscope.recipes import Recipe
from ifscope.recipes.digits import digits_data


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet(nn.Module):
    def __init__(self, layers=(1, 1), widths=(16, 32), num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        stages, inplanes = [], widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = [BasicBlock(inplanes, w, stride=1 if i == 0 else 2)] + [BasicBlock(w, w) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            inplanes = w
        self.layers = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        return self.fc(torch.flatten(self.avgpool(self.layers(x)), 1))


def make(n_train: int = 1000, n_test: int = 300, epochs: int = 20, lr: float = 3e-3, weight_decay: float = 1e-3,
         seed: int = 0) -> Recipe:
    # your data: images as [N, C, H, W] tensors and integer labels
    (xtr, ytr), (xte, yte), _ = digits_data(n_train, n_test, seed)
    train, test = (xtr.view(-1, 1, 8, 8), ytr), (xte.view(-1, 1, 8, 8), yte)

    # your model and your usual training loop (train mode: BatchNorm on batch statistics)
    torch.manual_seed(seed)
    model = ResNet()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(n_train, generator=gen).split(64):
            loss = nn.functional.cross_entropy(model(train[0][idx]), train[1][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()

    # what ifscope needs: the task (all parameters here; BatchNorm statistics are buffers, used as they are)
    task = ifscope.classification(model)
    return Recipe(model, task, train, test,
                  info={"weight_decay": weight_decay, "image_shape": (8, 8), "classes": [str(i) for i in range(10)]})
