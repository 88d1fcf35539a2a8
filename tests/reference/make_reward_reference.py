#!/usr/bin/env python3
"""Writes the golden data that tests/unit/test_reward_reference.c compares with:
a reward model (transformers' *ForSequenceClassification with num_labels 1)
trained with the Bradley-Terry loss of TRL's RewardTrainer.

For each configuration: <out>/<name>/hf/ (the reward model as a Hugging Face
folder: config.json with architectures [<Arch>ForSequenceClassification],
id2label {"0": "LABEL_0"}, label2id, pad_token_id; model.safetensors with the
body under "transformer.*" (GPT-2) or "model.*" and a top-level "score.weight"
(1, hidden)), <out>/<name>/lm/ (the same body as a causal LM, without
score.weight: what a reward model starts from) and <out>/<name>/golden.h5:
  input_ids, targets   (S, B, T) int32: B rows = B/2 pairs, row 2p = prompt +
                       chosen, row 2p+1 = prompt + rejected (the pair loader's
                       contract), targets -100 on the prompt and the padding;
                       padding inputs are pad_token_id (never a real token);
                       one row per batch fills all T positions (no padding)
  logits               (B,) float64: the rewards of batch 0
  loss                 scalar float64, batch 0's -logsigmoid(r_chosen - r_rejected).mean()
  grads/<hf name>      float64 gradients of that loss, Hugging Face layout
  params_after/<hf name>  after S steps of torch.optim.AdamW (decay / no-decay
                       groups, as models.decays), clip_grad_norm_ and a LambdaLR
                       of models.lr_at, each step on its own batch
  attributes: the optimizer settings, steps, clip_active, pad_token_id,
  accuracy and margin (batch 0: mean of r_c > r_r and of r_c - r_r).

The reward is models.rewards: the score linear over the last hidden state at
the rightmost input != pad_token_id, as transformers'
LlamaForSequenceClassification / GPT2ForSequenceClassification forward pools
it ((token_indices * non_pad_mask).argmax(-1)). The loss is TRL
RewardTrainer.compute_loss without margin or center_rewards_coefficient:
-nn.functional.logsigmoid(rewards_chosen - rewards_rejected).mean().
The model runs in float64 from float32 weights.

usage: make_reward_reference.py OUT_DIR [NAME ...]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden  # noqa: E402
import hf_io  # noqa: E402
import make_reference as mr  # noqa: E402
import models  # noqa: E402

STEPS = 3
# eps 1e-6: GPT-2's key bias (the middle third of c_attn.bias) has an exactly
# zero gradient (softmax ignores a per-query constant), which fp32 computes as
# rounding noise ~1e-9; eps 1e-8 would let Adam scale that noise up to ~lr/10
# per element, a difference of arithmetic, not of the model
OPT = dict(lr=2e-3, lr_min=2e-4, lr_warmup=1, total_steps=4, schedule="cosine", beta1=0.9,
           beta2=0.95, eps=1e-6, weight_decay=0.1, grad_clip=0.5)

CONFIGS = {
    # gpt2 (GPT2ForSequenceClassification: transformer.* + score.weight), 4 pairs
    "gpt2": dict(mr.CONFIGS["gpt2_tied"], B=8, T=14),
    # llama GQA, untied LM head in the causal folder (dropped by the score layout), 4 pairs
    "llama": dict(mr.CONFIGS["llama_gqa"], B=8, T=15, tied=False),
}

CLASS = {"gpt2": "GPT2ForSequenceClassification", "llama": "LlamaForSequenceClassification"}


def pair_batches(c, g):
    """(S, B, T) inputs and targets of pair rows; pad = V - 1, real tokens < V - 1."""
    S, B, T, V = STEPS, c["B"], c["T"], c["V"]
    pad = V - 1
    inp = torch.full((S, B, T), pad, dtype=torch.int64)
    tgt = torch.full((S, B, T), -100, dtype=torch.int64)
    for s in range(S):
        for p in range(B // 2):
            lp = int(torch.randint(2, 5, (1,), generator=g))
            prompt = torch.randint(0, V - 1, (lp,), generator=g)
            for k in range(2):
                b = 2 * p + k
                full = p == 1 and k == 0  # runs past T: no padding, its last target beyond the row
                n = T + 1 - lp if full else int(torch.randint(2, T - lp + 1, (1,), generator=g))
                resp = torch.randint(0, V - 1, (n,), generator=g)
                seq = torch.cat([prompt, resp])  # prompt + response (the last token its end marker)
                m = min(len(seq), T)
                inp[s, b, :m] = seq[:m]
                # targets[j] = seq[j + 1] for the response tokens
                for j in range(lp - 1, len(seq) - 1):
                    if j < T:
                        tgt[s, b, j] = seq[j + 1]
    return inp, tgt


def bt_loss(r):
    return -torch.nn.functional.logsigmoid(r[0::2] - r[1::2]).mean()


def run(name, c, out):
    g = torch.Generator().manual_seed(2000 + sum(map(ord, name)))
    folder = os.path.join(out, name)
    body = mr.make_params(c, g)
    lm_cfg = mr.hf_config(c)
    inp, tgt = pair_batches(c, g)
    pad = c["V"] - 1
    score = torch.randn(1, c["C"], generator=g) * 0.3
    P32 = {k: v for k, v in body.items() if k != "lm_head.weight"}
    P32["score.weight"] = score
    cfg = dict(lm_cfg, architectures=[CLASS[c["kind"]]], id2label={"0": "LABEL_0"},
               label2id={"LABEL_0": 0}, pad_token_id=pad)
    hf_io.write_folder(os.path.join(folder, "hf"), cfg, P32)
    hf_io.write_folder(os.path.join(folder, "lm"), lm_cfg, body)

    P = {k: v.to(torch.float64).requires_grad_(True) for k, v in P32.items()}
    r0 = models.rewards(P, cfg, inp[0])
    loss = bt_loss(r0)
    loss.backward()
    grads = {k: v.grad.detach().clone() for k, v in P.items()}
    d = (r0[0::2] - r0[1::2]).detach()

    # S steps of the real torch.optim.AdamW
    Q = {k: v.detach().clone().requires_grad_(True) for k, v in P.items()}
    groups = [{"params": [p for k, p in Q.items() if models.decays(k)], "weight_decay": OPT["weight_decay"]},
              {"params": [p for k, p in Q.items() if not models.decays(k)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=OPT["lr"], betas=(OPT["beta1"], OPT["beta2"]), eps=OPT["eps"])

    def lr_at(s):
        return models.lr_at(s, OPT["total_steps"], OPT["lr"], OPT["lr_min"], OPT["lr_warmup"], OPT["schedule"])

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_at(e + 1) / OPT["lr"])
    clip_active = []
    for s in range(1, STEPS + 1):
        opt.zero_grad(set_to_none=True)
        bt_loss(models.rewards(Q, cfg, inp[s - 1])).backward()
        norm = torch.nn.utils.clip_grad_norm_(list(Q.values()), OPT["grad_clip"]).item()
        clip_active.append(OPT["grad_clip"] / (norm + 1e-6) < 1.0)
        opt.step()
        sched.step()
    after = {k: v.detach() for k, v in Q.items()}
    golden.write(os.path.join(folder, "golden.h5"), inp, tgt, r0.detach(), loss, grads, after, OPT, STEPS,
                 clip_active, name=name, pad_token_id=pad, accuracy=(d > 0).double().mean().item(),
                 margin=d.mean().item())
    print(f"{name}: rewards {r0.detach().numpy().round(4).tolist()} loss {loss.item():.6f} "
          f"clip {clip_active}")


if __name__ == "__main__":
    golden.main(__doc__, CONFIGS, run)
