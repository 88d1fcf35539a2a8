#!/usr/bin/env python3
"""PyTorch side of tests/integration/test_eval_reward.sh (Debian's python3
with torch, h5py, hdf5plugin; the model definitions of tests/reference).
  model OUT_DIR VOCAB PAD     a random tiny reward model as transformers'
                              LlamaForSequenceClassification folder (GQA 4:2,
                              num_labels 1: id2label {"0": "LABEL_0"},
                              pad_token_id PAD, "score.weight" (1, hidden))
  eval HF_DIR T SHARD...      over every pair of the pair shards (layout
                              "pairs": documents 3i, 3i+1, 3i+2 = prompt,
                              chosen, rejected), each (prompt + response) cut
                              to its first T tokens and scored one sequence
                              at a time as transformers does without padding
                              (the score at the last token, models.rewards);
                              accuracy = mean(r_c > r_r), margin = mean(r_c -
                              r_r), loss = TRL RewardTrainer's
                              -logsigmoid(r_c - r_r).mean(); a pair whose
                              prompt alone exceeds T (no response token in
                              either row) is not counted; prints JSON
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import hf_io  # noqa: E402
import models  # noqa: E402


def cmd_model(out, vocab, pad):
    hf_io.write_random_llama(out, vocab, 3, "score", id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0},
                             pad_token_id=pad)


def cmd_eval(hf_dir, T, shards):
    import h5py
    import hdf5plugin  # noqa: F401  (registers the zstd filter)
    cfg, P = hf_io.read_folder(hf_dir)
    pairs = []
    for path in shards:
        with h5py.File(path, "r") as f:
            lay = f.attrs["layout"]
            assert (lay.decode() if isinstance(lay, bytes) else str(lay)) == "pairs", path
            tok = f["tokens"][:].tolist()
            off = f["doc_offsets"][:].tolist()
        docs = [tok[off[d]:off[d + 1]] for d in range(len(off) - 1)]
        pairs += [(docs[i], docs[i + 1], docs[i + 2]) for i in range(0, len(docs), 3)]
    # a row's first response token is the target at position len(prompt) - 1:
    # a prompt longer than T leaves both rows without one, and such a pair
    # is not counted (data/loader.h; train/pairs.h counts a pair by its targets)
    cut = sum(1 for p in pairs if len(p[0]) > T)
    pairs = [p for p in pairs if len(p[0]) <= T]
    rc, rr = [], []
    # batch size 1, no padding: transformers pools the last position, whatever pad_token_id is
    cfg1 = dict(cfg, pad_token_id=-1)
    with torch.no_grad():
        for prompt, chosen, rejected in pairs:
            for resp, out in ((chosen, rc), (rejected, rr)):
                ids = torch.tensor([(prompt + resp)[:T]])
                out.append(models.rewards(P, cfg1, ids)[0].item())
    rc, rr = torch.tensor(rc, dtype=torch.float64), torch.tensor(rr, dtype=torch.float64)
    d = rc - rr
    print(json.dumps({"accuracy": (d > 0).double().mean().item(), "margin": d.mean().item(),
                      "loss": (-torch.nn.functional.logsigmoid(d)).mean().item(), "pairs": len(pairs),
                      "cut": cut}))


def main():
    torch.set_num_threads(1)
    cmd = sys.argv[1]
    if cmd == "model":
        cmd_model(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "eval":
        cmd_eval(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
