"""Train the evaluation probe (mouth opening/width + identity embedding) on rendered avatar frames.

CPU, a few minutes: ``python -m asymk_talker.train.probe --out assets/probe``. Frames of
``--identities`` train identities (even seeds) are rendered once with random mouth, blink and head
pose; the probe learns mouth regression (MSE) and identity classification with a cosine-margin
softmax (the class weights are dropped after training; only the embedding is kept). Validation
uses held-out identities (odd seeds) speaking held-out utterances. Writes the probe folder plus
``training_report.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..asymk_core.eval.probe import AvatarProbe, probe_training_frames
from ..asymk_core.synthetic.corpus import make_sample, split_seed


def build_dataset(identities: int, frames_per_identity: int, size: int, seed: int):
    """Rendered frames uint8 [I*F, S, S, 3], mouth_open, mouth_width [I*F], identity index [I*F]."""
    rng = np.random.default_rng(seed)
    frames, mo, mw, label = [], [], [], []
    for k in range(identities):
        f, o, w = probe_training_frames(rng, split_seed("identity", "pool", k), frames_per_identity, size=size)
        frames.append(f), mo.append(o), mw.append(w), label.append(np.full(len(f), k))
    return np.concatenate(frames), np.concatenate(mo), np.concatenate(mw), np.concatenate(label)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mild degradations a generated video may have: blur, down/up-sampling, noise. [B,3,H,W] in [0,1]."""
    b = x.shape[0]
    r = torch.rand(b, 3, generator=generator)
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    x = torch.where((r[:, 0] < 0.25)[:, None, None, None], blurred, x)
    h = x.shape[-1]
    small = F.interpolate(x, size=(h // 2, h // 2), mode="bilinear", antialias=True)
    small = F.interpolate(small, size=(h, h), mode="bilinear")
    x = torch.where((r[:, 1] < 0.2)[:, None, None, None], small, x)
    sigma = 0.03 * r[:, 2, None, None, None]
    return (x + sigma * torch.randn(x.shape, generator=generator)).clamp(0, 1)


def validate(probe: AvatarProbe, size: int, seconds: float = 8.0, count: int = 4) -> dict:
    """Held-out identities/utterances: mouth Pearson r and MAE; identity 1-cos to own vs other portraits."""
    samples = [make_sample(split_seed("identity", "probe-val", i, heldout=True),
                           split_seed("utterance", "probe-val", i, heldout=True), seconds, size=size)
               for i in range(count)]
    preds = [probe.predict(s.frames) for s in samples]
    true_o = np.concatenate([s.tracks["mouth_open"] for s in samples])
    pred_o = np.concatenate([p["mouth_open"] for p in preds])
    true_w = np.concatenate([s.tracks["mouth_width"] for s in samples])
    pred_w = np.concatenate([p["mouth_width"] for p in preds])
    portraits = probe.predict(np.stack([s.portrait for s in samples]))["embedding"]
    own, other = [], []
    for i, p in enumerate(preds):
        d = 1.0 - p["embedding"] @ portraits.T  # [N, count]
        own.append(d[:, i].mean())
        other.append(np.delete(d, i, axis=1).mean())
    return {"mouth_open_pearson": float(np.corrcoef(pred_o, true_o)[0, 1]),
            "mouth_open_mae": float(np.abs(pred_o - true_o).mean()),
            "mouth_width_pearson": float(np.corrcoef(pred_w, true_w)[0, 1]),
            "identity_distance_same": float(np.mean(own)), "identity_distance_other": float(np.mean(other))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="assets/probe")
    parser.add_argument("--identities", type=int, default=240)
    parser.add_argument("--frames-per-identity", type=int, default=80)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    frames, mo, mw, label = build_dataset(args.identities, args.frames_per_identity, args.size, args.seed)
    print(f"rendered {len(frames)} frames of {args.identities} identities in {time.perf_counter() - started:.1f} s")
    data = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()  # uint8 [N,3,H,W]
    mo_t, mw_t, label_t = torch.from_numpy(mo), torch.from_numpy(mw), torch.from_numpy(label)

    probe = AvatarProbe(image_size=args.size)
    classes = torch.nn.Parameter(torch.randn(args.identities, probe.config.embedding_dim) * 0.1)
    optimizer = torch.optim.AdamW(list(probe.parameters()) + [classes], lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(args.seed)
    scale, margin = 16.0, 0.25
    probe.train()
    for step in range(args.steps):
        idx = torch.randint(len(data), (args.batch,), generator=generator)
        x = augment(data[idx].float() / 255.0, generator)
        out = probe(x)
        mouth_loss = F.mse_loss(out.mouth_open, mo_t[idx]) + 0.5 * F.mse_loss(out.mouth_width, mw_t[idx])
        cos = out.embedding @ F.normalize(classes, dim=-1).T
        cos = cos - margin * F.one_hot(label_t[idx], args.identities)
        id_loss = F.cross_entropy(scale * cos, label_t[idx])
        loss = 20.0 * mouth_loss + id_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 250 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  mouth mse {mouth_loss.item():.4f}  id loss {id_loss.item():.3f}  "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    probe.eval()
    report = validate(probe, args.size)
    report.update(steps=args.steps, identities=args.identities, frames=len(frames),
                  seconds=round(time.perf_counter() - started, 1), seed=args.seed)
    print(json.dumps(report, indent=2))
    out = Path(args.out)
    probe.save_pretrained(str(out))
    (out / "training_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved the probe to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
