#!/usr/bin/env python3
"""Writes the golden data that tests/unit/test_model_reference.c compares with.

For each configuration: <out>/<name>/hf/ (a Hugging Face folder: config.json +
model.safetensors, F32, GPT-2 in Conv1D layout) and <out>/<name>/golden.h5:
  input_ids, targets   (S, B, T) int32, targets -100 = ignored; batch 0 is the
                       one logits/loss/grads are taken on, batch s the one of
                       optimizer step s+1
  logits               (B, T, V) float64
  loss                 scalar float64 (mean over non-ignored targets)
  grads/<hf name>      float64, Hugging Face layout
  params_after/<hf name>  float64 after S AdamW steps (warmup, cosine, clipping)
  attributes: the optimizer settings, and clip_active (steps where clipping
  scaled the gradients)
The model runs in float64 (weights are float32 values) with the plain PyTorch
definitions of models.py; AdamW is written out in golden.py (torch.optim.AdamW semantics)
with torch's clip_grad_norm_ factor.

A configuration with skip_step (llama_skip) trains with the real
torch.optim.AdamW (decay / no-decay parameter groups), clip_grad_norm_ and a
LambdaLR schedule instead, and makes the gradient of step skip_step
non-finite (a NaN in one element): clip_grad_norm_ returns a non-finite norm
and, as torch.cuda.amp.GradScaler.step does when it finds infs or NaNs,
optimizer.step() is not called while scheduler.step() is. Adam's step count
(state["step"]) therefore counts applied updates only. Its golden.h5 also has
the attribute skip_step and
  params_after_advance/<hf name>  the same run with state["step"] advanced at
                       the skip (bias correction from the global step, what
                       shardlm's FSDP step did before): a step count that
                       advances must fail the comparison with params_after.

usage: make_reference.py OUT_DIR [NAME ...]
"""
import os
import sys

import h5py
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden  # noqa: E402
import hf_io  # noqa: E402
import models  # noqa: E402

STEPS = 3  # optimizer steps per configuration unless it sets "steps"
OPT = dict(lr=2e-3, lr_min=2e-4, lr_warmup=2, total_steps=5, schedule="cosine", beta1=0.9,
           beta2=0.95, eps=1e-8, weight_decay=0.1, grad_clip=0.05)

CONFIGS = {
    # tiny gpt2, tied head, saved with the "transformer." prefix (save_pretrained)
    "gpt2_tied": dict(kind="gpt2", prefix="transformer.", L=2, C=48, H=4, V=128, P=32, T=16, B=2, tied=True),
    # gpt2 untied, no prefix (hub layout), head dim 12 and T 11
    "gpt2_untied": dict(kind="gpt2", prefix="", L=2, C=36, H=3, V=101, P=16, T=11, B=2, tied=False),
    # llama with GQA (n_head = 3 x n_kv_head), tied, "rope_theta" key
    "llama_gqa": dict(kind="llama", L=2, C=48, H=6, Hk=2, F=80, V=96, P=64, T=16, B=2, tied=True,
                      theta=10000.0, rope_key="rope_theta"),
    # llama untied, head dim 10 and T 13 (not powers of two), theta 500000 via rope_parameters;
    # B 4 so that the batch splits over 2 ranks
    "llama_untied": dict(kind="llama", L=2, C=40, H=4, Hk=4, F=72, V=90, P=32, T=13, B=4, tied=False,
                         theta=500000.0, rope_key="rope_parameters"),
    # llama, 4 steps of torch.optim.AdamW, step 2's gradient non-finite (skipped)
    "llama_skip": dict(kind="llama", L=2, C=32, H=4, Hk=2, F=64, V=80, P=32, T=12, B=2, tied=False,
                       theta=10000.0, rope_key="rope_theta", steps=4, skip_step=2),
    # Llama-3.1 rope scaling (rope_scaling llama3, head_dim written as Llama-3.2's config does):
    # with D 12 and original_max_position_embeddings 256, frequencies 0-1 are kept, 2 is blended
    # and 3-5 divided by the factor
    "llama3_rope": dict(kind="llama", L=2, C=48, H=4, Hk=2, D=12, F=72, V=97, P=1024, T=13, B=2,
                        tied=False, theta=10000.0, rope_key="rope_theta",
                        scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 256}),
    # linear rope scaling through transformers v5's rope_parameters, tied, MHA
    "llama_linear": dict(kind="llama", L=2, C=32, H=4, Hk=4, F=64, V=80, P=64, T=12, B=2, tied=True,
                         theta=10000.0, rope_key="rope_parameters",
                         scaling={"rope_type": "linear", "factor": 4.0}),
    # Qwen2 (q/k/v biases), tied like Qwen2.5-0.5B, GQA 6/2
    "qwen2_tied": dict(kind="llama", mtype="qwen2", L=2, C=48, H=6, Hk=2, F=80, V=96, P=64, T=16, B=2,
                       tied=True, theta=1000000.0, rope_key="rope_theta"),
    # Qwen2 untied like Qwen2.5-7B, head dim 10, T 13, B 4
    "qwen2_untied": dict(kind="llama", mtype="qwen2", L=2, C=40, H=4, Hk=4, F=72, V=90, P=32, T=13, B=4,
                         tied=False, theta=10000.0, rope_key="rope_theta"),
    # Qwen3 (q_norm/k_norm before RoPE), head_dim 16 != hidden 40 / heads 4, GQA 4/2, tied
    "qwen3_gqa": dict(kind="llama", mtype="qwen3", L=2, C=40, H=4, Hk=2, D=16, F=64, V=89, P=64, T=11,
                      B=2, tied=True, theta=1000000.0, rope_key="rope_theta"),
    # Mistral: a sliding window (32) longer than the sequences, head_dim 16 != 48 / 4 (as
    # Mistral-Nemo), GQA 4/2, untied
    "mistral": dict(kind="llama", mtype="mistral", L=2, C=48, H=4, Hk=2, D=16, F=96, V=100, P=128, T=14,
                    B=2, tied=False, theta=1000000.0, rope_key="rope_theta", window=32),
}


def make_params(c, g):
    P = {}
    std = 0.02

    def n(*shape, s=std):
        return torch.randn(*shape, generator=g) * s

    C, L, V = c["C"], c["L"], c["V"]
    if c["kind"] == "gpt2":
        F = 4 * C
        P["wte.weight"] = n(V, C)
        P["wpe.weight"] = n(c["P"], C, s=0.01)
        for i in range(L):
            h = f"h.{i}."
            P[h + "ln_1.weight"] = 1 + n(C, s=0.1)
            P[h + "ln_1.bias"] = n(C)
            P[h + "attn.c_attn.weight"] = n(C, 3 * C)
            P[h + "attn.c_attn.bias"] = n(3 * C)
            P[h + "attn.c_proj.weight"] = n(C, C)
            P[h + "attn.c_proj.bias"] = n(C)
            P[h + "ln_2.weight"] = 1 + n(C, s=0.1)
            P[h + "ln_2.bias"] = n(C)
            P[h + "mlp.c_fc.weight"] = n(C, F)
            P[h + "mlp.c_fc.bias"] = n(F)
            P[h + "mlp.c_proj.weight"] = n(F, C)
            P[h + "mlp.c_proj.bias"] = n(C)
        P["ln_f.weight"] = 1 + n(C, s=0.1)
        P["ln_f.bias"] = n(C)
        P = {c["prefix"] + k: v for k, v in P.items()}
    else:
        D = c.get("D", C // c["H"])
        mtype = c.get("mtype", "llama")
        P["model.embed_tokens.weight"] = n(V, C)
        for i in range(L):
            h = f"model.layers.{i}."
            P[h + "input_layernorm.weight"] = 1 + n(C, s=0.1)
            P[h + "self_attn.q_proj.weight"] = n(c["H"] * D, C)
            P[h + "self_attn.k_proj.weight"] = n(c["Hk"] * D, C)
            P[h + "self_attn.v_proj.weight"] = n(c["Hk"] * D, C)
            if mtype == "qwen2":
                P[h + "self_attn.q_proj.bias"] = n(c["H"] * D, s=0.1)
                P[h + "self_attn.k_proj.bias"] = n(c["Hk"] * D, s=0.1)
                P[h + "self_attn.v_proj.bias"] = n(c["Hk"] * D, s=0.1)
            if mtype == "qwen3":
                P[h + "self_attn.q_norm.weight"] = 1 + n(D, s=0.1)
                P[h + "self_attn.k_norm.weight"] = 1 + n(D, s=0.1)
            P[h + "self_attn.o_proj.weight"] = n(C, c["H"] * D)
            P[h + "post_attention_layernorm.weight"] = 1 + n(C, s=0.1)
            P[h + "mlp.gate_proj.weight"] = n(c["F"], C)
            P[h + "mlp.up_proj.weight"] = n(c["F"], C)
            P[h + "mlp.down_proj.weight"] = n(C, c["F"])
        P["model.norm.weight"] = 1 + n(C, s=0.1)
    if not c["tied"]:
        P["lm_head.weight"] = n(V, C)
    return P


def hf_config(c):
    if c["kind"] == "gpt2":
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_layer": c["L"],
                "n_embd": c["C"], "n_head": c["H"], "n_inner": None, "vocab_size": c["V"],
                "n_positions": c["P"], "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new",
                "tie_word_embeddings": c["tied"]}
    mtype = c.get("mtype", "llama")
    cls = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
           "qwen3": "Qwen3ForCausalLM"}[mtype]
    cfg = {"architectures": [cls], "model_type": mtype, "hidden_size": c["C"],
           "intermediate_size": c["F"], "num_hidden_layers": c["L"], "num_attention_heads": c["H"],
           "num_key_value_heads": c["Hk"], "vocab_size": c["V"], "max_position_embeddings": c["P"],
           "rms_norm_eps": 1e-5, "hidden_act": "silu", "tie_word_embeddings": c["tied"]}
    if mtype in ("llama", "qwen3"):
        cfg["attention_bias"] = False
    if mtype == "llama":
        cfg["mlp_bias"] = False
    if "D" in c:
        cfg["head_dim"] = c["D"]
    if mtype in ("qwen2", "qwen3"):
        cfg.update(use_sliding_window=False, sliding_window=None, max_window_layers=c["L"])
    if mtype == "mistral":
        cfg["sliding_window"] = c.get("window")
    if c["rope_key"] == "rope_theta":
        cfg["rope_theta"] = c["theta"]
        cfg["rope_scaling"] = c.get("scaling")
    else:
        cfg["rope_parameters"] = dict(c.get("scaling", {"rope_type": "default"}), rope_theta=c["theta"])
    return cfg


def scaling_effect(cfg, P32, inp):
    """Relative change of the logits when the rope scaling is dropped: the
    golden test can only tell scaled from plain RoPE if this is large."""
    plain = dict(cfg, rope_scaling=None)
    if "rope_parameters" in cfg:
        plain["rope_parameters"] = {"rope_type": "default", "rope_theta": cfg["rope_parameters"]["rope_theta"]}
    P = {k: v.to(torch.float64) for k, v in P32.items()}
    with torch.no_grad():
        a, b = models.logits(P, cfg, inp), models.logits(P, plain, inp)
    return ((a - b).norm() / a.norm()).item()


def batches(c, g):
    S, B, T, V = c.get("steps", STEPS), c["B"], c["T"], c["V"]
    ids = torch.randint(0, V, (S, B, T + 1), generator=g)
    inp, tgt = ids[..., :-1].clone(), ids[..., 1:].clone()
    ignore = torch.rand(S, B, T, generator=g) < 0.25
    tgt[ignore] = -100
    tgt[:, 0, 0] = 5  # at least one valid target per batch
    return inp, tgt


def torch_adamw_run(P, cfg, inp, tgt, steps, skip_step, advance_on_skip):
    """steps optimizer steps with torch.optim.AdamW, clip_grad_norm_ and
    LambdaLR (models.lr_at); at skip_step a NaN goes into one gradient
    element and optimizer.step() is not called (GradScaler's skip), unless
    advance_on_skip, which instead only advances every state["step"] (the
    semantics a test must reject). Returns the parameters after the steps
    and the clip_active list (False at the skip)."""
    P = {k: v.detach().clone().requires_grad_(True) for k, v in P.items()}
    groups = [{"params": [p for k, p in P.items() if models.decays(k)], "weight_decay": OPT["weight_decay"]},
              {"params": [p for k, p in P.items() if not models.decays(k)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=OPT["lr"], betas=(OPT["beta1"], OPT["beta2"]), eps=OPT["eps"])

    def lr_at(s):  # the LR of 1-based optimizer step s
        return models.lr_at(s, OPT["total_steps"], OPT["lr"], OPT["lr_min"], OPT["lr_warmup"], OPT["schedule"])

    # LambdaLR sets lr = base_lr * lambda(last_epoch), last_epoch = 0 after
    # construction and + 1 per scheduler.step(): step s runs at last_epoch s - 1
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_at(e + 1) / OPT["lr"])
    params = list(P.values())
    clip_active = []
    for s in range(1, steps + 1):
        assert abs(opt.param_groups[0]["lr"] - lr_at(s)) <= 1e-12 * OPT["lr"], (s, opt.param_groups[0]["lr"])
        opt.zero_grad(set_to_none=True)
        _, ls = golden.loss_of(P, cfg, inp[s - 1], tgt[s - 1])
        ls.backward()
        if s == skip_step:
            next(iter(P.values())).grad.view(-1)[0] = float("nan")
        norm = torch.nn.utils.clip_grad_norm_(params, OPT["grad_clip"]).item()
        if s == skip_step:
            assert not torch.isfinite(torch.tensor(norm)), f"step {s}: the norm {norm} should be non-finite"
            clip_active.append(False)
            if advance_on_skip:
                for st in opt.state.values():
                    st["step"] += 1
        else:
            assert norm == norm and norm != float("inf")
            clip_active.append(OPT["grad_clip"] / (norm + 1e-6) < 1.0)
            opt.step()
        sched.step()
    return {k: v.detach() for k, v in P.items()}, clip_active


def run_skip(name, c, out, folder, cfg, P32, inp, tgt):
    S, skip = c["steps"], c["skip_step"]
    P = {k: v.to(torch.float64).requires_grad_(True) for k, v in P32.items()}
    lg, loss = golden.loss_of(P, cfg, inp[0], tgt[0])
    loss.backward()
    grads0 = {k: v.grad.detach().clone() for k, v in P.items()}
    after, clip_active = torch_adamw_run(P, cfg, inp, tgt, S, skip, False)
    advance, _ = torch_adamw_run(P, cfg, inp, tgt, S, skip, True)
    applied = [a for i, a in enumerate(clip_active) if i + 1 != skip]
    if not all(applied):
        raise SystemExit(f"{name}: clipping was not active at every applied step ({clip_active}); lower grad_clip")
    num = sum(((after[k] - advance[k]) ** 2).sum() for k in after).sqrt().item()
    den = sum((after[k] ** 2).sum() for k in after).sqrt().item()
    if num / den < 1e-3:
        raise SystemExit(f"{name}: advancing the step count on the skip changes the parameters by only "
                         f"{num / den:.2e}: the test could not tell the semantics apart")
    path = os.path.join(folder, "golden.h5")
    golden.write(path, inp, tgt, lg, loss, grads0, after, OPT, S, clip_active, name=name, skip_step=skip)
    with h5py.File(path, "a") as f:
        for k, t in advance.items():
            f["params_after_advance/" + k] = t.numpy()
    print(f"{name}: loss {loss.item():.6f}, step {skip} of {S} skipped; advancing the count instead "
          f"moves the parameters by {num / den:.2e} -> {folder}")


def run(name, c, out):
    g = torch.Generator().manual_seed(1000 + sum(map(ord, name)))
    P32 = make_params(c, g)
    cfg = hf_config(c)
    folder = os.path.join(out, name)
    hf_io.write_folder(os.path.join(folder, "hf"), cfg, P32)
    inp, tgt = batches(c, g)
    if "skip_step" in c:
        return run_skip(name, c, out, folder, cfg, P32, inp, tgt)
    P = {k: v.to(torch.float64).requires_grad_(True) for k, v in P32.items()}
    lg, loss = golden.loss_of(P, cfg, inp[0], tgt[0])
    loss.backward()
    grads0 = {k: v.grad.detach().clone() for k, v in P.items()}
    m = {k: torch.zeros_like(v) for k, v in P.items()}
    v2 = {k: torch.zeros_like(v) for k, v in P.items()}
    clip_active = []
    for s in range(1, STEPS + 1):
        if s > 1:
            for t in P.values():
                t.grad = None
            _, ls = golden.loss_of(P, cfg, inp[s - 1], tgt[s - 1])
            ls.backward()
        clip_active.append(golden.adamw_step(P, m, v2, s, OPT, models.decays) < 1.0)
    if not all(clip_active):
        raise SystemExit(f"{name}: clipping was not active at every step ({clip_active}); lower grad_clip")
    golden.write(os.path.join(folder, "golden.h5"), inp, tgt, lg, loss, grads0, P, OPT, STEPS, clip_active,
                 name=name)
    note = ""
    if "scaling" in c:
        eff = scaling_effect(cfg, P32, inp[0])
        if eff < 1e-4:  # 10x the logits tolerance of test_model_reference
            raise SystemExit(f"{name}: the rope scaling changes the logits by only {eff:.2e}")
        note = f", rope scaling moves the logits by {eff:.2e}"
    print(f"{name}: loss {loss.item():.6f}, {len(P)} tensors{note} -> {folder}")


if __name__ == "__main__":
    golden.main(__doc__, CONFIGS, run)
