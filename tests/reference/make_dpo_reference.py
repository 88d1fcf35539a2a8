#!/usr/bin/env python3
"""Writes the golden data that tests/unit/test_dpo_reference.c compares with:
Direct Preference Optimization as TRL's DPOTrainer computes it, 3 optimizer
steps of full fine-tuning or LoRA.

The DPO formulas mirror TRL v0.23.0 (github.com/huggingface/trl, tag v0.23.0,
trl/trainer/dpo_trainer.py):
  concatenated_forward: a row's logps = the sum of log_softmax(logits)
    gathered at the labels over the completion tokens (loss_mask); with
    loss_type "ipo": all_logps / loss_mask.sum(-1) (per-token average), for
    the policy and the reference (compute_ref_log_probs runs the same
    concatenated_forward)
  dpo_loss: logits = (chosen - rejected) - (ref_chosen - ref_rejected);
    sigmoid: -logsigmoid(beta logits)(1 - ls) - logsigmoid(-beta logits) ls
    robust:  (-logsigmoid(beta logits)(1 - ls) + logsigmoid(-beta logits) ls) / (1 - 2 ls)
    ipo:     (logits - 1 / (2 beta))^2
    chosen_rewards = beta (chosen - ref_chosen).detach(), rejected alike
  get_batch_loss_metrics: losses.mean(); rewards/chosen, rewards/rejected,
    rewards/accuracies (chosen_rewards > rejected_rewards), rewards/margins,
    logps/chosen, logps/rejected: means over the batch
The reference model is a frozen copy of the starting policy (full
fine-tuning: ref_model = a copy; LoRA: TRL's PEFT path runs the model with
the adapters disabled, i.e. the base). The model is models.py in float64
(weights are float32 values); LoRA acts as PEFT's W + s B A (GPT-2 Conv1D:
+ s (B A)^T). The optimizer is torch.optim.AdamW itself (decay / no-decay
parameter groups; PEFT adapters all decay), torch.nn.utils.clip_grad_norm_,
and the learning rate of models.lr_at set on the groups before each step.

For each configuration: <out>/<name>/hf/ (the base/starting model),
<out>/<name>/adapter/ (LoRA: the PEFT adapter the policy starts from) and
<out>/<name>/golden.h5:
  input_ids, targets   (S, 2 NP, T) int32: NP pairs per global batch, row 2p =
                       prompt + chosen, row 2p+1 = prompt + rejected (the
                       same prompt), padded with token 0; targets = the next
                       token where it is a response token, else -100
  losses               (S) the DPO loss of each step (before its update)
  metrics1             (6) step 1's TRL metrics in the order above
  grads/<name>         step 1's gradient (full: Hugging Face names without
                       prefix, HF layout; LoRA: PEFT tensor names)
  params_after/<name>  after S steps
  attributes: the optimizer settings, beta, label_smoothing, loss_type
  (0 sigmoid, 1 ipo, 2 robust: runtime/config.h's dpo_loss order), lora (0/1),
  policy_is_reference (1: step 1's policy equals the reference), clip_active.

usage: make_dpo_reference.py OUT_DIR [NAME ...]
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden  # noqa: E402
import hf_io  # noqa: E402
import make_lora_reference as mlr  # noqa: E402
import make_reference as mr  # noqa: E402
import models  # noqa: E402

STEPS = 3
NP = 4   # pairs per global batch: 1 per rank at world size 4
# eps 1e-6: GPT-2's key bias has an analytically zero gradient (softmax is
# shift invariant), so its float32 gradient is rounding noise (~1e-9) that
# Adam with eps 1e-8 would turn into updates of a tenth of the learning rate
# (the float64 reference's noise is ~1e-18); 1e-6 keeps those below the
# test's tolerance without changing what the comparison checks elsewhere
OPT_BASE = dict(lr=2e-3, lr_min=2e-4, lr_warmup=1, total_steps=4, schedule="cosine", beta1=0.9,
                beta2=0.95, eps=1e-6, weight_decay=0.1, grad_clip=0.5)
LOSS_ID = {"sigmoid": 0, "ipo": 1, "robust": 2}

GPT2 = dict(mr.CONFIGS["gpt2_untied"], T=14)
LLAMA = dict(mr.CONFIGS["llama_gqa"], T=12, tied=False)
GPT2_TIED = dict(mr.CONFIGS["gpt2_tied"], T=12)

CONFIGS = {
    # full fine-tuning: policy == reference at step 1
    "full_gpt2_sigmoid": dict(base=GPT2, loss="sigmoid", beta=0.1, ls=0.0),
    "full_llama_sigmoid_ls": dict(base=LLAMA, loss="sigmoid", beta=0.5, ls=0.1),
    "full_llama_ipo": dict(base=LLAMA, loss="ipo", beta=0.1, ls=0.0),
    "full_gpt2_robust": dict(base=GPT2, loss="robust", beta=0.2, ls=0.2),
    # LoRA, starting from a non-zero adapter (the reference, the base, differs from the policy)
    "lora_llama_sigmoid": dict(base=LLAMA, loss="sigmoid", beta=0.1, ls=0.0, lora=True, r=4, alpha=8.0,
                               targets=["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"], clip=0.01),
    "lora_gpt2_robust": dict(base=GPT2_TIED, loss="robust", beta=0.3, ls=0.15, lora=True, r=3, alpha=6.0,
                             targets=["c_attn", "c_proj", "c_fc"], clip=0.01),
    "lora_llama_ipo": dict(base=LLAMA, loss="ipo", beta=0.2, ls=0.0, lora=True, r=4, alpha=4.0,
                           targets=["q_proj", "k_proj", "gate_proj"], clip=0.01),
    # LoRA from fresh adapters (B = 0): the policy starts equal to the reference
    "lora_gpt2_fresh": dict(base=GPT2_TIED, loss="sigmoid", beta=0.1, ls=0.0, lora=True, r=2, alpha=4.0,
                            targets=["c_attn"], zero_b=True, clip=0.01),
}


def pair_batches(T, V, g):
    """(S, 2 NP, T) inputs and targets: prompt + chosen / prompt + rejected."""
    inp = torch.zeros(STEPS, 2 * NP, T, dtype=torch.int64)
    tgt = torch.full((STEPS, 2 * NP, T), -100, dtype=torch.int64)
    for s in range(STEPS):
        for p in range(NP):
            lp = int(torch.randint(2, 6, (1,), generator=g))
            prompt = torch.randint(1, V, (lp,), generator=g)
            for k in range(2):
                lr = int(torch.randint(2, T + 2 - lp, (1,), generator=g))
                seq = torch.cat([prompt, torch.randint(1, V, (lr,), generator=g)])
                row = 2 * p + k
                n = min(T, len(seq))
                inp[s, row, :n] = seq[:n]
                for t in range(T):
                    if lp <= t + 1 < len(seq):
                        tgt[s, row, t] = seq[t + 1]
    return inp, tgt


def row_logps(P, cfg, inp, tgt):
    """Summed log p of each row's response tokens (TRL's all_logps) and
    the response lengths (loss_mask.sum(-1))."""
    lg = models.logits(P, cfg, inp)
    mask = tgt >= 0
    tok = torch.log_softmax(lg, dim=-1).gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (tok * mask).sum(-1), mask.sum(-1)


def dpo(c, pol, ref, n):
    """TRL v0.23 dpo_loss + get_batch_loss_metrics on the concatenated rows."""
    beta, ls = c["beta"], c["ls"]
    if c["loss"] == "ipo":
        pol, ref = pol / n, ref / n
    pc, pr, rc, rr = pol[0::2], pol[1::2], ref[0::2], ref[1::2]
    logits = (pc - pr) - (rc - rr)
    if c["loss"] == "sigmoid":
        losses = -F.logsigmoid(beta * logits) * (1 - ls) - F.logsigmoid(-beta * logits) * ls
    elif c["loss"] == "robust":
        losses = (-F.logsigmoid(beta * logits) * (1 - ls) + F.logsigmoid(-beta * logits) * ls) / (1 - 2 * ls)
    else:
        losses = (logits - 1 / (2 * beta)) ** 2
    cr = beta * (pc - rc).detach()
    rj = beta * (pr - rr).detach()
    metrics = [cr.mean().item(), rj.mean().item(), (cr > rj).double().mean().item(), (cr - rj).mean().item(),
               pc.detach().mean().item(), pr.detach().mean().item()]
    return losses.mean(), metrics


def run(name, c, out):
    b = c["base"]
    OPT = dict(OPT_BASE, grad_clip=c.get("clip", OPT_BASE["grad_clip"]))
    g = torch.Generator().manual_seed(3000 + sum(map(ord, name)))
    P32 = mr.make_params(b, g)
    cfg = mr.hf_config(b)
    folder = os.path.join(out, name)
    hf_io.write_folder(os.path.join(folder, "hf"), cfg, P32)
    base = {k: v.to(torch.float64) for k, v in models.strip(P32).items()}
    lora = c.get("lora", False)
    conv1d = b["kind"] == "gpt2"
    if lora:
        mods = mlr.adapted_modules(b["kind"], b["L"], c["targets"])
        A32, B32 = {}, {}
        for path, wkey in mods:
            w = base[wkey]
            out_f, in_f = (w.shape[1], w.shape[0]) if conv1d else (w.shape[0], w.shape[1])
            A32[path] = (torch.rand(c["r"], in_f, generator=g) * 2 - 1) / math.sqrt(in_f)
            B32[path] = torch.zeros(out_f, c["r"]) if c.get("zero_b") else torch.randn(out_f, c["r"], generator=g) * 0.3
        lc = dict(r=c["r"], alpha=c["alpha"], rslora=False, targets=c["targets"])
        mlr.write_adapter(os.path.join(folder, "adapter"), A32, B32, lc, conv1d)
        s = c["alpha"] / c["r"]
        A = {k: v.to(torch.float64).requires_grad_(True) for k, v in A32.items()}
        B = {k: v.to(torch.float64).requires_grad_(True) for k, v in B32.items()}
        train = mlr.peft_names(A, B)
        policy = lambda: mlr.effective(base, mods, A, B, s, conv1d)  # noqa: E731
        groups = [{"params": list(train.values()), "weight_decay": OPT["weight_decay"]}]
        ref_params = base  # adapters disabled
    else:
        train = {k: v.clone().requires_grad_(True) for k, v in base.items()}
        policy = lambda: train  # noqa: E731
        dec = [t for k, t in train.items() if models.decays(k)]
        nodec = [t for k, t in train.items() if not models.decays(k)]
        groups = [{"params": dec, "weight_decay": OPT["weight_decay"]}, {"params": nodec, "weight_decay": 0.0}]
        ref_params = {k: v.clone() for k, v in base.items()}  # frozen copy
    opt = torch.optim.AdamW(groups, lr=OPT["lr"], betas=(OPT["beta1"], OPT["beta2"]), eps=OPT["eps"])
    inp, tgt = pair_batches(b["T"], b["V"], g)
    losses, clip_active, grads1, metrics1 = [], [], {}, None
    for st in range(1, STEPS + 1):
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            ref, _ = row_logps(ref_params, cfg, inp[st - 1], tgt[st - 1])
        pol, n = row_logps(policy(), cfg, inp[st - 1], tgt[st - 1])
        loss, metrics = dpo(c, pol, ref, n)
        loss.backward()
        losses.append(loss.item())
        if st == 1:
            metrics1 = metrics
            grads1 = {k: t.grad.detach().clone() for k, t in train.items()}
        norm = torch.nn.utils.clip_grad_norm_(list(train.values()), OPT["grad_clip"])
        clip_active.append(bool(norm.item() > OPT["grad_clip"]))
        lr = models.lr_at(st, OPT["total_steps"], OPT["lr"], OPT["lr_min"], OPT["lr_warmup"], OPT["schedule"])
        for grp in opt.param_groups:
            grp["lr"] = lr
        opt.step()
    policy_is_ref = not lora or bool(c.get("zero_b"))
    if policy_is_ref and c["loss"] == "sigmoid" and c["ls"] == 0 and losses[0] != math.log(2):
        raise SystemExit(f"{name}: step-1 loss {losses[0]!r} is not ln 2 with the policy equal to the reference")
    if not any(clip_active):
        raise SystemExit(f"{name}: clipping never active; lower grad_clip")
    golden.write_results(os.path.join(folder, "golden.h5"), inp, tgt,
                         {"losses": np.array(losses), "metrics1": np.array(metrics1)}, grads1, train, OPT, STEPS,
                         clip_active, beta=c["beta"], label_smoothing=c["ls"], loss_type=LOSS_ID[c["loss"]],
                         lora=int(lora), policy_is_reference=int(policy_is_ref))
    print(f"{name}: losses {', '.join(f'{x:.6f}' for x in losses)}; clip {clip_active}; "
          f"accuracies step 1 {metrics1[2]:.2f} -> {folder}")


if __name__ == "__main__":
    golden.main(__doc__, CONFIGS, run)
