"""tlbook's training loop against a plain PyTorch DataLoader loop: same model, data, steps.

The baseline is written the way tutorials and the book's source articles write it: torchvision's
MNIST with ``ToTensor`` + ``Normalize`` transforms, a shuffling ``DataLoader``, ``.to(device)`` per
batch and ``loss.item()`` / accuracy ``.item()`` every step. The tlbook side is ``tl.fit`` with the
dataset held on the device. Both train the same CNN with AdamW at the same learning rate and
batch size, evaluate on the test set after every epoch, and stop at ``--epochs``.

Prints, side by side: training epochs per second (epochs after the first, which pays the
warm-up), the ratio, and the wall time until test accuracy first reaches ``--target`` (99%).

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


def baseline(model, dev, epochs, batch_size, lr, root, workers):
    """The usual loop: a DataLoader over torchvision's MNIST with per-image transforms."""
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_set = datasets.MNIST(root, train=True, download=True, transform=tf)
    test_set = datasets.MNIST(root, train=False, download=True, transform=tf)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, num_workers=workers)
    test_loader = DataLoader(test_set, batch_size=1000, num_workers=workers)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    epoch_times, accs, walls = [], [], []
    start = time.perf_counter()
    for _ in range(epochs):
        sync(dev)
        t0 = time.perf_counter()
        model.train()
        running_loss, correct, seen = 0.0, 0, 0
        for images, labels in train_loader:
            images, labels = images.to(dev), labels.to(dev)
            opt.zero_grad()
            out = model(images)
            loss = F.cross_entropy(out, labels)
            loss.backward()
            opt.step()
            running_loss += loss.item()
            correct += (out.argmax(1) == labels).sum().item()
            seen += labels.shape[0]
        sync(dev)
        epoch_times.append(time.perf_counter() - t0)
        model.eval()
        right = 0
        with torch.no_grad():
            for images, labels in test_loader:
                images, labels = images.to(dev), labels.to(dev)
                right += (model(images).argmax(1) == labels).sum().item()
        accs.append(right / len(test_set))
        walls.append(time.perf_counter() - start)
    return epoch_times, accs, walls


def tlbook_loop(model, dev, epochs, batch_size, lr):
    """tl.fit over device-resident tensors; per-epoch test accuracy from its history."""
    train = tl.load_dataset("mnist", "train", device=dev)
    test = tl.load_dataset("mnist", "test", device=dev)
    # One fit call per epoch would restart AdamW's state; instead one call, whose history records
    # the wall time at the end of every epoch (evaluation included, as in the baseline's walls).
    history = tl.fit(model, train, epochs=epochs, batch_size=batch_size, lr=lr, schedule="constant", eval_data=test, progress=False)
    sync(dev)
    walls, accs = history["seconds"], history["eval_acc"]
    # Training time of an epoch = its wall-time increment less one evaluation, measured here.
    t0 = time.perf_counter()
    tl.evaluate(model, test)
    sync(dev)
    eval_time = time.perf_counter() - t0
    epoch_times = [now - before - eval_time for before, now in zip([0.0] + walls[:-1], walls)]
    return epoch_times, accs, walls


def time_to(target, accs, walls):
    for acc, wall in zip(accs, walls):
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
    root = tl.cache_dir() / "data"

    results = {}
    for name in ("dataloader", "tlbook"):
        model = tl.make_model("cnn", widths=tuple(args.widths), seed=0).to(dev)
        torch.manual_seed(0)
        if name == "dataloader":
            results[name] = baseline(model, dev, args.epochs, args.batch_size, args.lr, root, args.workers)
        else:
            results[name] = tlbook_loop(model, dev, args.epochs, args.batch_size, args.lr)
        times, accs, walls = results[name]
        print(f"{name:>10}: epoch train times {[round(t, 2) for t in times]} s, test acc {[round(a, 4) for a in accs]}")

    def rate(name):
        times = results[name][0]
        steady = times[1:] if len(times) > 1 else times
        return 1.0 / statistics.median(steady)

    print()
    print(f"device: {info.device_name}, precision {info.precision}, torch {info.torch_version}")
    print(f"model: cnn widths={tuple(args.widths)}, batch {args.batch_size}, AdamW lr {args.lr}, {args.epochs} epochs, workers={args.workers}")
    print(f"{'':>22}{'DataLoader loop':>18}{'tlbook.fit':>14}{'ratio':>9}")
    r_base, r_tl = rate("dataloader"), rate("tlbook")
    print(f"{'epochs/s (steady)':>22}{r_base:>18.4f}{r_tl:>14.4f}{r_tl / r_base:>8.2f}x")
    t_base = time_to(args.target, *results["dataloader"][1:])
    t_tl = time_to(args.target, *results["tlbook"][1:])
    fmt = lambda t: f"{t:.1f} s" if t is not None else f">{args.epochs} ep"
    ratio = f"{t_base / t_tl:.2f}x" if t_base and t_tl else "n/a"
    print(f"{'time to ' + format(args.target, '.0%') + ' test acc':>22}{fmt(t_base):>18}{fmt(t_tl):>14}{ratio:>9}")
    print(f"{'final test acc':>22}{results['dataloader'][1][-1]:>18.4f}{results['tlbook'][1][-1]:>14.4f}")


if __name__ == "__main__":
    main()
