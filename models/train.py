"""Train ResNet8 on CIFAR-10 (CPU, PyTorch), fixed seeds, log each epoch.

    python models/train.py --epochs 30 --out models/build/resnet8.pt
"""
import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cifar import data_dir, load_test, load_train
from resnet8 import ResNet8


def augment(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop 32x32 from a 4-pixel zero-padded image, random horizontal flip."""
    n = batch.shape[0]
    padded = F.pad(batch, (4, 4, 4, 4))
    dx = torch.randint(0, 9, (n,), generator=gen)
    dy = torch.randint(0, 9, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.empty_like(batch)
    for i in range(n):
        crop = padded[i, :, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def evaluate(model, images, labels, batch=1000):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i:i + batch]).float()
            correct += (model(x).argmax(1).numpy() == labels[i:i + batch]).sum()
    return int(correct)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=0, help="stop early (timing runs)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "build" / "resnet8.pt")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    root = data_dir()
    xtr, ytr = load_train(root)
    xte, yte = load_test(root)
    xtr_t = torch.from_numpy(xtr).float()
    ytr_t = torch.from_numpy(ytr)

    model = ResNet8()
    nparams = sum(p.numel() for p in model.parameters())
    print(f"ResNet8: {nparams} parameters; train {len(xtr)} test {len(xte)} images from {root}", flush=True)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=args.wd)
    steps_per_epoch = (len(xtr) + args.batch - 1) // args.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch, pct_start=0.25)

    history = []
    step = 0
    for epoch in range(args.epochs):
        model.train()
        t0 = time.time()
        perm = torch.randperm(len(xtr), generator=gen)
        loss_sum = 0.0
        for b in range(steps_per_epoch):
            idx = perm[b * args.batch:(b + 1) * args.batch]
            x = augment(xtr_t[idx], gen)
            y = ytr_t[idx]
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss)
            step += 1
            if args.max_steps and step >= args.max_steps:
                print(f"{step} steps in {time.time() - t0:.1f} s", flush=True)
                return
        correct = evaluate(model, xte, yte)
        rec = {"epoch": epoch + 1, "loss": loss_sum / steps_per_epoch,
               "test_top1": correct / len(xte), "secs": time.time() - t0}
        history.append(rec)
        print(json.dumps(rec), flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "history": history,
                "args": {k: str(v) for k, v in vars(args).items()}}, args.out)
    print(f"saved {args.out}", flush=True)


if __name__ == "__main__":
    main()
