// Checks `shardlm prepare` chat output against the model's own template:
//   node chat_ref.js ASSETS TOKENIZER_DIR CONVERSATIONS.jsonl DOCS.json
// renders each conversation with @huggingface/jinja (0.5.13) from the
// tokenizer_config.json chat_template (bos_token, eos_token from the config,
// add_generation_prompt false), encodes the text with Hugging Face tokenizers
// (add_special_tokens false) and compares with the ids prepare wrote
// (DOCS.json: [{ids, mask}] in input order). The loss mask must select
// exactly the assistant turns: each maximal masked run, decoded, must contain
// the assistant content (trimmed) and end with the turn's end token, and the
// number of runs must equal the number of assistant turns. Exit 1 on any
// difference.
'use strict';
const fs = require('fs');
const path = require('path');
const [assets, dir, convFile, docsFile] = process.argv.slice(2);
const { Template } = require(path.join(assets, 'hf-jinja', 'dist', 'index.cjs'));
const native = require(path.join(assets, 'hf-tokenizers-linux-x64-gnu', 'tokenizers.linux-x64-gnu.node'));
const tok = native.Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
const str = v => (v && typeof v === 'object' ? v.content : v);
const tmpl = new Template(cfg.chat_template);
const convs = fs.readFileSync(convFile, 'utf8').split('\n').filter(x => x).map(JSON.parse);
const docs = JSON.parse(fs.readFileSync(docsFile, 'utf8'));
const endTok = { llama3: '<|eot_id|>', chatml: '<|im_end|>', qwen3: '<|im_end|>', llama2: str(cfg.eos_token), gemma: '<end_of_turn>' };
(async () => {
  let bad = 0;
  if (docs.length !== convs.length) { console.error(`${docs.length} documents for ${convs.length} conversations`); process.exit(1); }
  for (let i = 0; i < convs.length; i++) {
    const text = tmpl.render({ messages: convs[i].messages, bos_token: str(cfg.bos_token) || '',
      eos_token: str(cfg.eos_token) || '', add_generation_prompt: false });
    const ref = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
    const ids = docs[i].ids, mask = docs[i].mask;
    if (ref.length !== ids.length || ref.some((x, k) => x !== ids[k])) {
      let k = 0; while (k < ref.length && ref[k] === ids[k]) k++;
      console.error(`conversation ${i}: ids differ at #${k}\n rendered: ${JSON.stringify(text)}\n ours: ${ids.slice(Math.max(0, k - 3), k + 8)}\n ref:  ${ref.slice(Math.max(0, k - 3), k + 8)}`);
      bad++; continue;
    }
    const runs = [];
    for (let k = 0; k < ids.length; k++) {
      if (!mask[k]) continue;
      const s = k; while (k < ids.length && mask[k]) k++;
      runs.push(await tok.decode(ids.slice(s, k), false)); k--;
    }
    const asst = convs[i].messages.filter(m => m.role === 'assistant').map(m => m.content.trim());
    const end = endTok[process.env.CHAT_FORMAT];
    const ok = runs.length === asst.length && runs.every((r, k) => r.includes(asst[k]) && r.trimEnd().endsWith(end) &&
      !r.includes('[INST]') && !r.includes('user') && !r.includes('<|start_header_id|>') && !r.includes('<|im_start|>'));
    if (!ok) { console.error(`conversation ${i}: masked runs ${JSON.stringify(runs)} are not the assistant turns ${JSON.stringify(asst)}`); bad++; }
  }
  if (bad) process.exit(1);
  console.log(`${convs.length} conversations: ids equal to the rendered template, masks on assistant turns only`);
})();
