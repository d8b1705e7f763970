"""tlbook's training loop against a plain PyTorch DataLoader loop: same model, data, steps.

The baseline is written the way tutorials and the book's source articles write it: torchvision's
MNIST with ``ToTensor`` + ``Normalize`` transforms, a shuffling ``DataLoader``, ``.to(device)`` per
batch and ``loss.item()`` / accuracy ``.item()`` every step. The tlbook side is ``tl.fit`` with the
dataset held on the device. Both train the same CNN from the same initial weights with AdamW at
the same constant learning rate and batch size, and evaluate on the test set after every epoch.
The two loops run *interleaved*, one epoch each in turn, so that both see the same machine load
(on a shared machine a sequential run would give one of them the quiet minutes).

Prints, side by side: training epochs per second (median and best over the epochs after the
first, which pays the warm-up), the ratio, and the wall time (training plus per-epoch evaluation)
until test accuracy first reaches ``--target`` (99%).

Run: ``python benchmarks/bench_loop.py`` (TLBOOK_DATA / TLBOOK_CACHE as for the book).
Results are recorded in benchmarks/RESULTS.md with the device they ran on.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

import tlbook as tl


def sync(dev):
    # Timings must wait for queued GPU work; on the CPU there is nothing to wait for.
    if dev.type == "cuda":
        torch.cuda.synchronize()


class DataLoaderLoop:
    """The usual loop: a DataLoader over torchvision's MNIST with per-image transforms."""

    def __init__(self, model, dev, batch_size, lr, root, workers):
        tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
        self.train_set = datasets.MNIST(root, train=True, download=True, transform=tf)
        self.test_set = datasets.MNIST(root, train=False, download=True, transform=tf)
        self.train_loader = DataLoader(self.train_set, batch_size=batch_size, shuffle=True, num_workers=workers)
        self.test_loader = DataLoader(self.test_set, batch_size=1000, num_workers=workers)
        self.model, self.dev = model, dev
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)

    def train_epoch(self):
        model, dev, opt = self.model, self.dev, self.opt
        model.train()
        running_loss, correct, seen = 0.0, 0, 0
        for images, labels in self.train_loader:
            images, labels = images.to(dev), labels.to(dev)
            opt.zero_grad()
            out = model(images)
            loss = F.cross_entropy(out, labels)
            loss.backward()
            opt.step()
            # Never read: these per-step .item() calls are the tutorial's running metrics, and the host
            # syncs they cost are part of what the baseline measures.
            running_loss += loss.item()
            correct += (out.argmax(1) == labels).sum().item()
            seen += labels.shape[0]

    def test_accuracy(self):
        self.model.eval()
        right = 0
        with torch.no_grad():
            for images, labels in self.test_loader:
                images, labels = images.to(self.dev), labels.to(self.dev)
                right += (self.model(images).argmax(1) == labels).sum().item()
        return right / len(self.test_set)


class TlbookLoop:
    """tl.fit over device-resident tensors, one call per epoch sharing one AdamW (constant lr)."""

    def __init__(self, model, dev, batch_size, lr):
        self.train = tl.load_dataset("mnist", "train", device=dev)
        self.test = tl.load_dataset("mnist", "test", device=dev)
        self.model, self.batch_size, self.epoch = model, batch_size, 0
        # The same optimiser object across calls keeps AdamW's moments, as one long run would.
        self.opt = tl.train.make_optimizer(model.parameters(), lr)

    def train_epoch(self):
        self.epoch += 1
        tl.fit(self.model, self.train, epochs=1, batch_size=self.batch_size, optimizer=self.opt,
               schedule="constant", seed=self.epoch, progress=False)

    def test_accuracy(self):
        return tl.evaluate(self.model, self.test)


def run_interleaved(loops, dev, epochs):
    """Alternate one epoch of each loop, so that both see the same machine load over the run.

    Returns, per loop, lists of training seconds per epoch, test accuracy and test seconds per epoch.
    """
    out = {name: {"train_s": [], "acc": [], "test_s": []} for name in loops}
    for epoch in range(1, epochs + 1):
        for name, loop in loops.items():
            sync(dev)
            t0 = time.perf_counter()
            loop.train_epoch()
            sync(dev)
            t1 = time.perf_counter()
            acc = loop.test_accuracy()
            sync(dev)
            t2 = time.perf_counter()
            for key, value in (("train_s", t1 - t0), ("acc", acc), ("test_s", t2 - t1)):
                out[name][key].append(value)
            print(f"epoch {epoch} {name:>10}: train {t1 - t0:6.2f} s, test acc {acc:.4f}", flush=True)
    return out


def time_to(target, result):
    """Wall time (training + per-epoch evaluation) until test accuracy first reaches ``target``."""
    wall = 0.0
    for train_s, test_s, acc in zip(result["train_s"], result["test_s"], result["acc"]):
        wall += train_s + test_s
        if acc >= target:
            return wall
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for the baseline (tutorial default: 0)")
    args = parser.parse_args()

    info = tl.setup(seed=0)
    dev = tl.device()
    # tlbook keeps MNIST in torchvision's layout under its cache (staged from TLBOOK_DATA offline,
    # downloaded otherwise), so the baseline's torchvision dataset reads the very same files.
    tl.load_dataset("mnist", "train")
    root = tl.cache.cache_dir() / "data"

    # Same architecture and the same initial weights on both sides.
    make = lambda: tl.make_model("cnn", widths=tuple(args.widths), seed=0).to(dev)
    loops = {
        "dataloader": DataLoaderLoop(make(), dev, args.batch_size, args.lr, root, args.workers),
        "tlbook": TlbookLoop(make(), dev, args.batch_size, args.lr),
    }
    torch.manual_seed(0)
    results = run_interleaved(loops, dev, args.epochs)

    def epochs_per_s(name, pick):
        times = results[name]["train_s"]
        steady = times[1:] if len(times) > 1 else times  # the first epoch pays warm-up
        return 1.0 / pick(steady)

    print()
    print(f"device: {info.device_name}, precision {info.precision}, torch {info.torch_version}")
    print(f"model: cnn widths={tuple(args.widths)}, batch {args.batch_size}, AdamW lr {args.lr} constant, "
          f"{args.epochs} epochs (interleaved), DataLoader workers={args.workers}")
    print(f"{'':>24}{'DataLoader loop':>18}{'tlbook.fit':>14}{'ratio':>9}")
    for label, pick in (("epochs/s (median)", statistics.median), ("epochs/s (best)", min)):
        base, fast = epochs_per_s("dataloader", pick), epochs_per_s("tlbook", pick)
        print(f"{label:>24}{base:>18.4f}{fast:>14.4f}{fast / base:>8.2f}x")
    t_base, t_tl = time_to(args.target, results["dataloader"]), time_to(args.target, results["tlbook"])
    fmt = lambda t: f"{t:.1f} s" if t is not None else f">{args.epochs} ep"
    ratio = f"{t_base / t_tl:.2f}x" if t_base and t_tl else "n/a"
    print(f"{'time to ' + format(args.target, '.0%') + ' test acc':>24}{fmt(t_base):>18}{fmt(t_tl):>14}{ratio:>9}")
    print(f"{'final test acc':>24}{results['dataloader']['acc'][-1]:>18.4f}{results['tlbook']['acc'][-1]:>14.4f}")


if __name__ == "__main__":
    main()
