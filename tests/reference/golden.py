"""What the make_*reference.py scripts share: the mean cross-entropy loss,
one AdamW step with global-norm clipping as shardlm applies it, the golden.h5
writer the C tests read (tests/unit/support/golden.h), and the command line.
The models themselves are in models.py; each script owns its configurations
and what it trains."""
import sys

import h5py
import numpy as np
import torch

import models


def loss_of(P, cfg, inp, tgt, adapt=None):
    """Logits (B, T, V) and the mean loss over targets != -100 (adapt: see
    models.py)."""
    lg = models.logits(P, cfg, inp, adapt)
    V = lg.shape[-1]
    s = torch.nn.functional.cross_entropy(lg.reshape(-1, V), tgt.reshape(-1), ignore_index=-100,
                                          reduction="sum")
    return lg, s / (tgt >= 0).sum()


def adamw_step(P, m, v, step, opt, decays):
    """One AdamW step (torch.optim.AdamW semantics) on every tensor of P from
    its .grad, scaled first by torch's clip_grad_norm_ factor over all of P;
    m and v hold the moments (same keys as P); decays(name) says whether the
    tensor gets weight decay. Returns the clip factor (< 1 when it clipped)."""
    norm = torch.sqrt(sum((t.grad.detach() ** 2).sum() for t in P.values())).item()
    f = min(1.0, opt["grad_clip"] / (norm + 1e-6))
    lr = models.lr_at(step, opt["total_steps"], opt["lr"], opt["lr_min"], opt["lr_warmup"], opt["schedule"])
    b1, b2, eps = opt["beta1"], opt["beta2"], opt["eps"]
    with torch.no_grad():
        for k, p in P.items():
            gr = p.grad * f
            wd = opt["weight_decay"] if decays(k) else 0.0
            p.mul_(1 - lr * wd)
            m[k].mul_(b1).add_(gr, alpha=1 - b1)
            v[k].mul_(b2).addcmul_(gr, gr, value=1 - b2)
            denom = (v[k].sqrt() / (1 - b2 ** step) ** 0.5).add_(eps)
            p.addcdiv_(m[k], denom, value=-lr / (1 - b1 ** step))
    return f


def write(path, inp, tgt, logits, loss, grads, params_after, opt, steps, clip_active, **attrs):
    """golden.h5: input_ids/targets (S, B, T) int32, logits, loss, grads/<name>,
    params_after/<name> (float64), the optimizer settings, steps, clip_active
    and any further scalar attributes."""
    write_results(path, inp, tgt, {"logits": logits.detach().numpy(), "loss": loss.item()}, grads, params_after,
                  opt, steps, clip_active, **attrs)


def write_results(path, inp, tgt, results, grads, params_after, opt, steps, clip_active, **attrs):
    """write with other result datasets than logits and loss: results
    {name: array or scalar}, written in its order after input_ids/targets."""
    with h5py.File(path, "w") as f:
        f["input_ids"] = inp.numpy().astype(np.int32)
        f["targets"] = tgt.numpy().astype(np.int32)
        for k, val in results.items():
            f[k] = val
        for k, t in grads.items():
            f["grads/" + k] = t.numpy()
        for k, t in params_after.items():
            f["params_after/" + k] = t.detach().numpy()
        for k, val in opt.items():
            f.attrs[k] = val
        f.attrs["steps"] = steps
        for k, val in attrs.items():
            f.attrs[k] = val
        f.attrs["clip_active"] = np.array(clip_active, dtype=np.int32)


def main(doc, configs, run):
    """usage: <script> OUT_DIR [NAME ...]; run(name, config, out) for each
    named configuration, or all of them."""
    if len(sys.argv) < 2:
        raise SystemExit(doc)
    torch.set_num_threads(1)
    out = sys.argv[1]
    for n in sys.argv[2:] or list(configs):
        if n not in configs:
            raise SystemExit(f"unknown configuration {n!r}; known: {', '.join(configs)}")
        run(n, configs[n], out)
