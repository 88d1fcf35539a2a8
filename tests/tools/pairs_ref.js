// Checks the preference-pair shards of `shardlm prepare` against TRL's way of
// building DPO inputs, rendered and tokenized by the reference libraries:
//   node pairs_ref.js ASSETS TOKENIZER_DIR MODE END_TOKEN PAIRS.jsonl DOCS.json
// MODE chat: each record is turned into (prompt messages, chosen answer,
// rejected answer) as TRL does: Anthropic HH-RLHF strings by TRL's
// examples/datasets/hh-rlhf-helpful-base.py extract_dialogue (common start
// of the two strings, cut after the last "\n\nAssistant: ", split at
// "\n\nHuman: " / "\n\nAssistant: "); UltraFeedback-style message lists by
// TRL's data_utils extract_prompt (the common leading messages of chosen
// and rejected are the prompt); TRL's explicit form (prompt list + answer
// lists) as is; standard strings as a user turn and assistant answers. Then
// trl.data_utils.apply_chat_template: prompt = template(prompt,
// add_generation_prompt=True), response = template(prompt + answer)
// minus that prefix, each rendered by @huggingface/jinja from the
// tokenizer_config.json chat_template and encoded by Hugging Face tokenizers
// (add_special_tokens false). The loss mask must be 0 over the prompt and,
// over a response, 1 up to and including its last END_TOKEN, 0 after.
// MODE standard: TRL's standard format untemplated (DPOTrainer.tokenize_row):
// prompt = encode(prompt), response = encode(response) + [eos_token id]
// (tokenizer_config.json eos_token), mask 1 over the response.
// Records with an "_expect" field are the ones prepare must drop: the script
// checks the reason holds (prompt_mismatch: the two conversations' prompts,
// each cut after its own last "\n\nAssistant:", differ; identical_pair: the
// answers are equal; exact_duplicate: an earlier record is the same) and
// skips them. DOCS.json: [{ids, mask}] in shard order, 3 per kept record.
'use strict';
const fs = require('fs');
const path = require('path');
const [assets, dir, mode, endTok, pairsFile, docsFile] = process.argv.slice(2);
const { Template } = require(path.join(assets, 'hf-jinja', 'dist', 'index.cjs'));
const native = require(path.join(assets, 'hf-tokenizers-linux-x64-gnu', 'tokenizers.linux-x64-gnu.node'));
const tok = native.Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
const str = v => (v && typeof v === 'object' ? v.content : v);
const tmpl = new Template(cfg.chat_template);
const lines = fs.readFileSync(pairsFile, 'utf8').split('\n').filter(x => x);
const recs = lines.map(JSON.parse);
const docs = JSON.parse(fs.readFileSync(docsFile, 'utf8'));

function commonStart(a, b) { let i = 0; while (i < a.length && i < b.length && a[i] === b[i]) i++; return a.slice(0, i); }
function extractDialogue(ex) { // hh-rlhf-helpful-base.py
  let p = commonStart(ex.chosen, ex.rejected);
  if (!p.endsWith('\n\nAssistant: ')) p = p.slice(0, p.lastIndexOf('\n\nAssistant: ')) + '\n\nAssistant: ';
  const chosen = ex.chosen.slice(p.length), rejected = ex.rejected.slice(p.length);
  p = p.slice(0, -'\n\nAssistant: '.length);
  const parts = p.split(/(\n\nAssistant: |\n\nHuman: )/).slice(1);
  const prompt = [];
  for (let i = 0; i < parts.length; i += 2)
    prompt.push({ role: parts[i] === '\n\nHuman: ' ? 'user' : 'assistant', content: parts[i + 1] });
  return { prompt, chosen: [{ role: 'assistant', content: chosen }], rejected: [{ role: 'assistant', content: rejected }] };
}
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
function extractPrompt(ex) { // trl.data_utils.extract_prompt: common leading messages
  let i = 0;
  while (i < ex.chosen.length && i < ex.rejected.length && same(ex.chosen[i], ex.rejected[i])) i++;
  return { prompt: ex.chosen.slice(0, i), chosen: ex.chosen.slice(i), rejected: ex.rejected.slice(i) };
}
function toMessages(ex) {
  if (typeof ex.chosen === 'string' && ex.prompt === undefined) return extractDialogue(ex);
  if (typeof ex.chosen === 'string' && typeof ex.prompt === 'string')
    return { prompt: [{ role: 'user', content: ex.prompt }], chosen: [{ role: 'assistant', content: ex.chosen }],
      rejected: [{ role: 'assistant', content: ex.rejected }] };
  if (Array.isArray(ex.prompt)) return { prompt: ex.prompt, chosen: ex.chosen, rejected: ex.rejected };
  return extractPrompt(ex);
}
const render = (messages, gen) => tmpl.render({ messages, bos_token: str(cfg.bos_token) || '',
  eos_token: str(cfg.eos_token) || '', add_generation_prompt: gen });
const enc = async text => (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
const lastPrompt = s => s.slice(0, s.lastIndexOf('\n\nAssistant:') + '\n\nAssistant:'.length);

(async () => {
  let bad = 0, d = 0, kept = 0;
  const err = m => { console.error(m); bad++; };
  const seen = [];
  for (let i = 0; i < recs.length; i++) {
    const ex = recs[i], why = ex._expect;
    const key = JSON.stringify({ ...ex, _expect: undefined });
    if (why === 'prompt_mismatch') {
      if (lastPrompt(ex.chosen) === lastPrompt(ex.rejected)) err(`record ${i}: prompts are equal, not a mismatch`);
      continue;
    }
    if (why === 'identical_pair') {
      const m = toMessages(ex);
      if (!same(m.chosen, m.rejected)) err(`record ${i}: answers differ`);
      continue;
    }
    if (why === 'exact_duplicate') {
      if (!seen.includes(key)) err(`record ${i}: no earlier record is the same`);
      continue;
    }
    seen.push(key);
    let want;
    if (mode === 'standard') {
      const eos = tok.tokenToId(str(cfg.eos_token));
      if (eos === null || eos === undefined) { err('no eos_token id'); break; }
      const p = await enc(ex.prompt);
      want = [[p, p.map(() => 0)]];
      for (const r of [ex.chosen, ex.rejected]) {
        const ids = (await enc(r)).concat([eos]);
        want.push([ids, ids.map(() => 1)]);
      }
    } else {
      const m = toMessages(ex);
      const ptext = render(m.prompt, true);
      const p = await enc(ptext);
      want = [[p, p.map(() => 0)]];
      for (const ans of [m.chosen, m.rejected]) {
        const full = render(m.prompt.concat(ans), false);
        if (!full.startsWith(ptext)) { err(`record ${i}: the generation prompt is not a prefix of the full rendering`); continue; }
        const ids = await enc(full.slice(ptext.length));
        const endId = tok.tokenToId(endTok);
        const k = ids.lastIndexOf(endId);
        if (k < 0) err(`record ${i}: the response has no ${endTok}`);
        want.push([ids, ids.map((_, j) => (j <= k ? 1 : 0))]);
      }
    }
    const names = ['prompt', 'chosen', 'rejected'];
    for (let s = 0; s < 3; s++, d++) {
      const got = docs[d];
      if (!got) { err(`record ${i}: shard has no document ${d}`); continue; }
      const [ids, mask] = want[s];
      if (!same(got.ids, ids)) {
        let k = 0; while (k < ids.length && ids[k] === got.ids[k]) k++;
        err(`record ${i} ${names[s]}: ids differ at #${k}\n ours: ${got.ids.slice(Math.max(0, k - 3), k + 8)}\n ref:  ${ids.slice(Math.max(0, k - 3), k + 8)}`);
      } else if (!same(got.mask, mask)) {
        err(`record ${i} ${names[s]}: mask ${got.mask.join('')} expected ${mask.join('')}`);
      }
    }
    kept++;
  }
  if (d !== docs.length) err(`${docs.length} documents in the shards, ${d} expected`);
  if (bad) process.exit(1);
  console.log(`${kept} pairs (${mode}): prompt and response ids equal TRL's rendering and tokenization, masks as specified`);
})();
