#!/usr/bin/env python3
"""PyTorch side of tests/integration/test_eval_choices.sh: multiple-choice
acc and acc_norm as lm-evaluation-harness computes them, for a Hugging Face
folder, with the token ids from the Hugging Face tokenizers library.

  eval_choices_ref.py HF_DIR TOKENIZER_JSON MC_JSONL ENCODER...

ENCODER... is a command that reads a JSON list of strings from the file
named by its last argument and prints a JSON list of their id lists
(tests/tools/tok_ref.js hfjson: Rust tokenizers, add_special_tokens=False,
what HFLM.tok_encode does for a causal LM without add_bos_token).

Mirrored from lm-evaluation-harness (EleutherAI/lm-evaluation-harness,
lm_eval/api/task.py and lm_eval/api/model.py):
  ConfigurableTask.construct_requests, output_type multiple_choice:
      arguments = [(ctx, f"{target_delimiter}{cont}") for cont in choices],
      target_delimiter " " (TaskConfig default)
  TemplateLM.loglikelihood: context == "" -> ([prefix_token_id],
      tok_encode(continuation)); HFLM.prefix_token_id is the BOS id when the
      tokenizer has one, else the EOS id: for the test's GPT-2-style
      tokenizer (one special, <|endoftext|>, GPT-2's bos and eos) that id
  TemplateLM._encode_pair:
      n_spaces = len(context) - len(context.rstrip())
      if n_spaces > 0: continuation = context[-n_spaces:] + continuation;
                       context = context[:-n_spaces]
      whole_enc = tok_encode(context + continuation)
      context_enc = tok_encode(context)
      continuation_enc = whole_enc[len(context_enc):]
  HFLM._loglikelihood_tokens: inp = (context_enc + continuation_enc)[:-1];
      the log_softmax of the logits at the last len(continuation_enc)
      positions, gathered at continuation_enc, summed
  ConfigurableTask.process_results, multiple_choice:
      completion_len = np.array([float(len(i)) for i in choices])
      pred = np.argmax(lls); pred_norm = np.argmax(lls / completion_len)
      acc = 1.0 if pred == gold else 0.0
      acc_norm = 1.0 if pred_norm == gold else 0.0
  aggregation mean: sum(arr) / len(arr)

Prints {"acc", "acc_norm", "n", "logliks": [[...] per question], "min_gap"}:
min_gap is the smallest distance between the best and the second score (raw
and normalized) over the questions; a tiny one would let float32 and float64
disagree on the argmax.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import hf_io  # noqa: E402
import models  # noqa: E402


def first(doc, *keys):
    for k in keys:
        if k in doc:
            return doc[k]
    raise KeyError(keys)


def gap(x):
    s = sorted(x, reverse=True)
    return s[0] - s[1] if len(s) > 1 else float("inf")


def main():
    hf_dir, tok_json, mc, encoder = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    torch.set_num_threads(1)
    cfg, P = hf_io.read_folder(hf_dir)
    specials = {t["content"]: t["id"] for t in json.load(open(tok_json)).get("added_tokens", [])}
    prefix_token_id = specials["<|endoftext|>"]

    docs = [json.loads(line) for line in open(mc, encoding="utf-8") if line.strip()]
    # every string tok_encode sees, encoded in one call of the reference tokenizer
    strings, requests = [], []
    for doc in docs:
        ctx = first(doc, "context", "query")
        choices = first(doc, "choices", "endings")
        reqs = []
        for choice in choices:
            context, continuation = ctx, " " + choice
            if context == "":
                reqs.append(("prefix", len(strings)))
                strings.append(continuation)
                continue
            n_spaces = len(context) - len(context.rstrip())
            if n_spaces > 0:
                continuation = context[-n_spaces:] + continuation
                context = context[:-n_spaces]
            reqs.append(("pair", len(strings)))
            strings += [context + continuation, context]
        requests.append(reqs)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump(strings, f)
    try:
        enc = json.loads(subprocess.run(encoder + [f.name], check=True, capture_output=True).stdout)
    finally:
        os.unlink(f.name)

    accs, accs_norm, all_lls, min_gap = [], [], [], float("inf")
    for doc, reqs in zip(docs, requests):
        lls = []
        for kind, at in reqs:
            if kind == "prefix":
                context_enc, continuation_enc = [prefix_token_id], enc[at]
            else:
                whole_enc, context_enc = enc[at], enc[at + 1]
                continuation_enc = whole_enc[len(context_enc):]
            inp = (context_enc + continuation_enc)[:-1]
            logits = models.logits(P, cfg, torch.tensor([inp]))[0]
            logp = torch.log_softmax(logits[-len(continuation_enc):], dim=-1)
            lls.append(float(logp.gather(1, torch.tensor(continuation_enc)[:, None]).sum()))
        choices = first(doc, "choices", "endings")
        gold = int(first(doc, "gold", "label"))
        completion_len = np.array([float(len(i)) for i in choices])
        pred = np.argmax(lls)
        pred_norm = np.argmax(np.array(lls) / completion_len)
        accs.append(1.0 if pred == gold else 0.0)
        accs_norm.append(1.0 if pred_norm == gold else 0.0)
        all_lls.append(lls)
        min_gap = min(min_gap, gap(lls), gap(list(np.array(lls) / completion_len)))
    print(json.dumps({"acc": sum(accs) / len(accs), "acc_norm": sum(accs_norm) / len(accs_norm), "n": len(docs),
                      "logliks": all_lls, "min_gap": min_gap}))


if __name__ == "__main__":
    main()
