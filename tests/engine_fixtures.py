"""A tiny in-memory classification problem and data manager, independent of dapt.data."""
from types import SimpleNamespace

import torch
from torch.utils.data import DataLoader, Dataset

CLASSNAMES = ["red", "green", "blue", "yellow"]
COLOURS = torch.tensor([[1.0, -1, -1], [-1, 1.0, -1], [-1, -1, 1.0], [1.0, 1.0, -1]])


class ColourPatches(Dataset):
    """Images whose colour encodes the class, plus fresh noise at every read (uses torch's RNG)."""

    def __init__(self, n_per_class, size=32, seed=0, noise=0.05):
        self.noise = noise
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for c in range(len(CLASSNAMES)):
            for _ in range(n_per_class):
                base = COLOURS[c].view(3, 1, 1) * 0.8 + 0.3 * torch.randn(3, size, size, generator=g)
                self.items.append((base, c))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        img, c = self.items[i]
        img = img + self.noise * torch.randn_like(img) if self.noise else img
        return {"img": img, "label": c, "impath": f"mem/{i}.png", "index": i}


def make_dm(batch_size=8, n_train=8, n_test=6, sequential=False, noise=0.05):
    train, test = ColourPatches(n_train, seed=0, noise=noise), ColourPatches(n_test, seed=1, noise=0.0)
    return SimpleNamespace(
        train_loader_x=DataLoader(train, batch_size=batch_size, shuffle=not sequential, drop_last=False),
        val_loader=DataLoader(test, batch_size=16),
        test_loader=DataLoader(test, batch_size=16),
        dataset=SimpleNamespace(multi_label=False, train_x=train.items),
        lab2cname=dict(enumerate(CLASSNAMES)),
        classnames=list(CLASSNAMES),
        num_classes=len(CLASSNAMES),
    )
