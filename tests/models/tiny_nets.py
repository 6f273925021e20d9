"""Small PyTorch networks for `lookout models add --from-torch` tests (imported by the CLI as FILE.py:FACTORY).

`bright_squares` is a real detector with set weights, so its exports can be checked against a known answer:
it splits a 64x64 input into a 4x4 grid of 16 px cells and scores each cell by its mean brightness, in the
YOLOv8 layout (1, 4 + classes, cells) with boxes as centre x, y, width, height in input pixels.
"""

from __future__ import annotations

import torch
from torch import nn

GRID, CELL = 4, 16


class BrightSquares(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.grey = nn.Conv2d(3, 1, 1, bias=False)
        with torch.no_grad():
            self.grey.weight.fill_(1.0 / 3.0)
        self.pool = nn.AvgPool2d(CELL)
        centres = (torch.arange(GRID, dtype=torch.float32) + 0.5) * CELL
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        size = torch.full((GRID, GRID), float(CELL))
        self.register_buffer("boxes", torch.stack([cx, cy, size, size])[None])  # (1, 4, GRID, GRID)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        brightness = self.pool(self.grey(x))  # input in [-1, 1]: white is 1, black -1
        score = torch.sigmoid(10.0 * (brightness - 0.5))
        return torch.cat([self.boxes, score], dim=1).reshape(1, 5, GRID * GRID)


def bright_squares() -> nn.Module:
    return BrightSquares()


def not_a_module() -> int:
    return 3
