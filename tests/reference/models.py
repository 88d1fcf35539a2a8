"""GPT-2 and the llama-like families (Llama, Mistral, Qwen2, Qwen3) in plain
PyTorch (no transformers), written from the architectures' definitions as
transformers' modeling_llama/mistral/qwen2/qwen3 compute them: q/k/v biases
where the checkpoint has them (Qwen2), a per-head RMSNorm of q and k before
RoPE (Qwen3's q_norm/k_norm), an explicit head_dim, and the RoPE inverse
frequencies of modeling_rope_utils (default, linear, llama3), over a dict of
Hugging Face-named tensors in
Hugging Face layout (GPT-2 Conv1D weights are (in, out); the "transformer."
prefix is stripped before use). Used by make_reference.py (float64) and by
benchmarks/peers/torch_step.py (float32).

adapt (optional): adapt(layer, module, x) returns a term added to the output
of block linear `module` ("attn.c_attn", "self_attn.q_proj", ... as in
Hugging Face's module paths inside a block) whose input is x, or None; LoRA
references use it for what cannot be merged into W (adapter dropout)."""
import math

import torch
import torch.nn.functional as F


def strip(params):
    return {(k[len("transformer."):] if k.startswith("transformer.") else k): v for k, v in params.items()}


def _attention(q, k, v, n_rep):
    # q (B, H, T, D); k, v (B, Hkv, T, D); query head h uses kv head h // n_rep
    if n_rep > 1:
        k = k.repeat_interleave(n_rep, dim=1)
        v = v.repeat_interleave(n_rep, dim=1)
    T, D = q.shape[2], q.shape[3]
    s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    s = s.masked_fill(~mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def _add(adapt, i, mod, x, y):
    if adapt is None:
        return y
    d = adapt(i, mod, x)
    return y if d is None else y + d


def gpt2_hidden(P, cfg, ids, adapt=None):
    """The final norm's output (B, T, C) (GPT2Model's last_hidden_state)."""
    L, C, H = cfg["n_layer"], cfg["n_embd"], cfg["n_head"]
    eps = cfg["layer_norm_epsilon"]
    B, T = ids.shape
    D = C // H
    x = P["wte.weight"][ids] + P["wpe.weight"][:T]
    for i in range(L):
        p = lambda n: P[f"h.{i}.{n}"]
        h = F.layer_norm(x, (C,), p("ln_1.weight"), p("ln_1.bias"), eps)
        qkv = _add(adapt, i, "attn.c_attn", h, h @ p("attn.c_attn.weight")) + p("attn.c_attn.bias")
        q, k, v = qkv.split(C, dim=-1)
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))
        a = _attention(q, k, v, 1).transpose(1, 2).reshape(B, T, C)
        x = x + _add(adapt, i, "attn.c_proj", a, a @ p("attn.c_proj.weight")) + p("attn.c_proj.bias")
        h = F.layer_norm(x, (C,), p("ln_2.weight"), p("ln_2.bias"), eps)
        f = F.gelu(_add(adapt, i, "mlp.c_fc", h, h @ p("mlp.c_fc.weight")) + p("mlp.c_fc.bias"),
                   approximate="tanh")
        x = x + _add(adapt, i, "mlp.c_proj", f, f @ p("mlp.c_proj.weight")) + p("mlp.c_proj.bias")
    return F.layer_norm(x, (C,), P["ln_f.weight"], P["ln_f.bias"], eps)


def gpt2_logits(P, cfg, ids, adapt=None):
    x = gpt2_hidden(P, cfg, ids, adapt)
    head = P["lm_head.weight"] if "lm_head.weight" in P else P["wte.weight"]
    return x @ head.t()


def rope_config(cfg):
    """(theta, scaling dict or None): transformers v5's rope_parameters, or
    v4's rope_theta and rope_scaling."""
    if "rope_parameters" in cfg:
        return cfg["rope_parameters"]["rope_theta"], cfg["rope_parameters"]
    return cfg.get("rope_theta", 10000.0), cfg.get("rope_scaling")


def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def inv_freq(cfg):
    """RoPE inverse frequencies (D/2,) float32, step by step as
    modeling_rope_utils' _compute_default / _linear_scaling / _llama3
    parameters do them (torch float32 ops with Python scalars)."""
    theta, sc = rope_config(cfg)
    D = head_dim(cfg)
    inv = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    kind = "default" if sc is None else sc.get("rope_type", sc.get("type", "default"))
    if kind == "default":
        return inv
    if kind == "linear":
        return inv / sc["factor"]
    if kind != "llama3":
        raise ValueError(f"rope_type {kind} has no reference here")
    factor, low, high = sc["factor"], sc["low_freq_factor"], sc["high_freq_factor"]
    old = sc["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv
    inv_l = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, inv_l)


def _rope(x, inv):
    # x (B, H, T, D); Hugging Face rotate_half pairing; angles in float32 as transformers does
    T, D = x.shape[2], x.shape[3]
    ang = torch.outer(torch.arange(T, dtype=torch.float32), inv)
    emb = torch.cat([ang, ang], dim=-1).to(x.dtype)
    cos, sin = emb.cos(), emb.sin()
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    rot = torch.cat([-x2, x1], dim=-1)
    return x * cos + rot * sin


def _rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def llama_hidden(P, cfg, ids, adapt=None):
    """The final norm's output (B, T, C) (LlamaModel's last_hidden_state)."""
    L, C, H = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"]
    Hk = cfg["num_key_value_heads"]
    eps = cfg["rms_norm_eps"]
    inv = inv_freq(cfg)
    B, T = ids.shape
    D = head_dim(cfg)
    x = P["model.embed_tokens.weight"][ids]
    for i in range(L):
        p = lambda n: P[f"model.layers.{i}.{n}"]
        has = lambda n: f"model.layers.{i}.{n}" in P

        def lin(mod, x_):
            y = x_ @ p(mod + ".weight").t()
            if has(mod + ".bias"):  # Qwen2's q/k/v
                y = y + p(mod + ".bias")
            return _add(adapt, i, mod, x_, y)

        h = _rms(x, p("input_layernorm.weight"), eps)
        q = lin("self_attn.q_proj", h).view(B, T, H, D)
        k = lin("self_attn.k_proj", h).view(B, T, Hk, D)
        v = lin("self_attn.v_proj", h).view(B, T, Hk, D).transpose(1, 2)
        if has("self_attn.q_norm.weight"):  # Qwen3: RMSNorm over each head's D, before RoPE
            q = _rms(q, p("self_attn.q_norm.weight"), eps)
            k = _rms(k, p("self_attn.k_norm.weight"), eps)
        q, k = _rope(q.transpose(1, 2), inv), _rope(k.transpose(1, 2), inv)
        a = _attention(q, k, v, H // Hk).transpose(1, 2).reshape(B, T, H * D)
        x = x + lin("self_attn.o_proj", a)
        h = _rms(x, p("post_attention_layernorm.weight"), eps)
        f = F.silu(lin("mlp.gate_proj", h)) * lin("mlp.up_proj", h)
        x = x + lin("mlp.down_proj", f)
    return _rms(x, P["model.norm.weight"], eps)


def llama_logits(P, cfg, ids, adapt=None):
    x = llama_hidden(P, cfg, ids, adapt)
    head = P["lm_head.weight"] if "lm_head.weight" in P else P["model.embed_tokens.weight"]
    return x @ head.t()


def logits(P, cfg, ids, adapt=None):
    P = strip(P)
    if cfg["model_type"] == "gpt2":
        return gpt2_logits(P, cfg, ids, adapt)
    return llama_logits(P, cfg, ids, adapt)


def hidden(P, cfg, ids, adapt=None):
    P = strip(P)
    if cfg["model_type"] == "gpt2":
        return gpt2_hidden(P, cfg, ids, adapt)
    return llama_hidden(P, cfg, ids, adapt)


def rewards(P, cfg, ids):
    """transformers' *ForSequenceClassification with num_labels 1: the score
    linear (no bias) over the last hidden state, pooled at each row's
    rightmost input != config pad_token_id (GenericForSequenceClassification /
    LlamaForSequenceClassification.forward: non_pad_mask, token_indices,
    (token_indices * non_pad_mask).argmax(-1)). Returns (B,)."""
    x = hidden(P, cfg, ids)
    logits = x @ strip(P)["score.weight"].t()  # (B, T, 1)
    non_pad = (ids != cfg["pad_token_id"]).to(torch.int32)
    idx = torch.arange(ids.shape[-1], dtype=torch.int32)
    last = (idx * non_pad).argmax(-1)
    return logits[torch.arange(ids.shape[0]), last][:, 0]


def decays(name):
    """AdamW weight decay applies to linear weights and an untied head only
    (not to norms, Qwen3's q_norm/k_norm included, nor to biases)."""
    n = strip({name: 0}).popitem()[0]
    if n in ("wte.weight", "wpe.weight", "model.embed_tokens.weight"):
        return False
    if n in ("lm_head.weight", "score.weight"):
        return True
    return n.endswith(".weight") and ("attn" in n or "mlp" in n) and "_norm." not in n


def lr_at(step, total, lr, lr_min, warmup, schedule):
    if warmup > 0 and step <= warmup:
        return lr * step / warmup
    prog = min(1.0, max(0.0, (step - warmup) / (total - warmup))) if total > warmup else 1.0
    if schedule == "cosine":
        out = lr_min + (lr - lr_min) * 0.5 * (1 + math.cos(math.pi * prog))
    elif schedule == "linear":
        out = lr - (lr - lr_min) * prog
    else:
        out = lr
    return max(out, lr_min)
