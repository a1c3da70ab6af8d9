"""ResNet50 image encoder and a dense 3D decoder that predicts an SDF grid from one image.

Shapes (B = batch, R = grid side, C0 = ``base_channels``)::

    image (B, 3, H, W) --ResNet50 stem..layer3--> f3 (B, 1024, H/16, W/16)
      --layer4--> f4 (B, 2048, H/32, W/32)
    [pool4(f3), pool4(f4)] (B, 3072, 4, 4) --Conv2d 1x1, BN, ReLU--> (B, 64, 4, 4) --flatten--> (B, 1024)
      --Linear--> (B, C0 * 4^3) --reshape--> (B, C0, 4, 4, 4)
      --log2(R/4) x [ConvTranspose3d stride 2, BN, ReLU (, Conv3d 3x3x3, BN, ReLU)]--> (B, C, R, R, R)
      --Conv3d 3x3x3--> (B, R, R, R) residual, added to a prior grid --> SDF

The lift keeps where things are in the image (a 4 x 4 map rather than one pooled vector: the object's
position and extent in the image are most of what a single view tells) and still lets every voxel of the
seed volume see the whole image through the linear layer. layer3 is used beside layer4 because at 64 px
layer4's map is only 2 x 2.

The prior is a buffer holding the training set's mean SDF grid (set once from the data, then saved in the
state dict): the network starts from the mean shape and learns what the image says about the difference,
which makes short CPU runs converge far sooner than regressing raw distances from zero.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn


@dataclass(frozen=True)
class ModelArgs:
    """Construction arguments, stored in every checkpoint so a resumed run rebuilds the same model.

    Attributes:
        grid: output SDF grid side, 4 times a power of two.
        base_channels: channels of the 4^3 seed volume; halved at each upsampling (floor 16).
        pretrained_path: optional local file with torchvision ResNet50 weights (no downloads offline).
    """

    grid: int = 32
    base_channels: int = 128
    pretrained_path: str = ""


class SDFNet(nn.Module):
    """Single-view SDF predictor: ResNet50 backbone + dense 3D head."""

    def __init__(self, args: ModelArgs) -> None:
        """Build the network (weights random unless ``args.pretrained_path`` names a local file)."""
        super().__init__()
        steps = math.log2(args.grid / 4)
        if args.grid < 8 or steps != int(steps):
            raise ValueError(f"grid must be 4 times a power of two, got {args.grid}")
        self.args = args
        resnet = torchvision.models.resnet50(weights=None)
        if args.pretrained_path:
            state = torch.load(Path(args.pretrained_path), map_location="cpu", weights_only=True)
            resnet.load_state_dict(state)
        self.trunk = nn.Sequential(  # stem + layer1..3
            resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool, resnet.layer1, resnet.layer2, resnet.layer3
        )
        self.layer4 = resnet.layer4
        c = args.base_channels
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.reduce = nn.Sequential(
            nn.Conv2d(1024 + 2048, 64, kernel_size=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        )
        self.lift = nn.Sequential(nn.Linear(64 * 16, c * 64), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        for level in range(int(steps)):
            out = max(16, c // 2)
            layers += [
                nn.ConvTranspose3d(c, out, kernel_size=4, stride=2, padding=1),
                nn.BatchNorm3d(out),
                nn.ReLU(inplace=True),
            ]
            # A refining 3x3x3 convolution at every level but the last: at full resolution it would cost as
            # much as the whole ResNet50 at 64 px (32^3 voxels x 16 x 16 x 27 multiply-adds per sample).
            if level < int(steps) - 1:
                layers += [
                    nn.Conv3d(out, out, kernel_size=3, padding=1),
                    nn.BatchNorm3d(out),
                    nn.ReLU(inplace=True),
                ]
            c = out
        self.decoder = nn.Sequential(*layers)
        self.head = nn.Conv3d(c, 1, kernel_size=3, padding=1)
        # Zero-initialised head: an untrained model predicts exactly the prior, not the prior plus noise.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("prior", torch.zeros(args.grid, args.grid, args.grid))

    def set_prior(self, grid: torch.Tensor) -> None:
        """Set the prior SDF grid ``(R, R, R)`` (the training set's mean) that predictions are relative to."""
        self.prior.copy_(grid.to(self.prior))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Map ``(B, 3, H, W)`` normalised images to ``(B, R, R, R)`` SDF grids."""
        f3 = self.trunk(image)  # (B, 1024, H/16, W/16)
        f4 = self.layer4(f3)  # (B, 2048, H/32, W/32)
        cells = self.reduce(torch.cat([self.pool(f3), self.pool(f4)], dim=1))  # (B, 64, 4, 4)
        vol = self.lift(cells.flatten(1)).view(-1, self.args.base_channels, 4, 4, 4)  # (B, C0, 4, 4, 4)
        return self.head(self.decoder(vol)).squeeze(1) + self.prior  # (B, R, R, R)

    def construction_args(self) -> dict[str, object]:
        """The arguments to rebuild this model (for checkpoints)."""
        return asdict(self.args)
