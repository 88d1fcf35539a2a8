// Reference encodings for the tokenizer tests and benchmark, from the npm
// packages that `make setup` puts in test-assets/.
//
//   node tok_ref.js gpt2   ASSETS INPUT          ids from gpt-3-encoder@1.1.4
//   node tok_ref.js cl100k ASSETS INPUT [all]    ids from tiktoken@1.0.22 (WASM);
//                                                "all" allows special tokens
//   node tok_ref.js bench  ASSETS INPUT RUNS     tiktoken cl100k MB/s (one thread)
//   node tok_ref.js hf     ASSETS TOKENIZER_JSON INPUT
//                                                ids from Hugging Face tokenizers
//                                                (Rust, 0.22.2 inside npm
//                                                @anush008/tokenizers@0.6.0),
//                                                encode(text, add_special_tokens=false)
//   node tok_ref.js hfjson ASSETS TOKENIZER_JSON STRINGS_JSON
//                                                the same for each string of a
//                                                JSON list: a JSON list of id lists
//   node tok_ref.js hfdecode ASSETS TOKENIZER_JSON IDS
//                                                that library's decode(ids,
//                                                skip_special_tokens=false)
//   node tok_ref.js hfbench ASSETS TOKENIZER_JSON INPUT RUNS
//                                                its MB/s (one thread: the
//                                                single-string encode is serial)
//   node tok_ref.js utf8   INPUT OUTPUT          INPUT's bytes decoded as UTF-8
//                                                with U+FFFD replacement (WHATWG),
//                                                written back as UTF-8
//
// Ids are written space-separated on one line, as `shardlm tokenize` prints
// them. Both references take JavaScript strings: INPUT is decoded as UTF-8
// with replacement characters, so tests hand them files that are valid UTF-8
// (the utf8 mode makes one from arbitrary bytes).
//
// gpt-3-encoder's encode() appends with Array.concat, quadratic in the
// output length (minutes for a few MB). We load the package's own
// Encoder.js and run its encode() loop with push instead: the same regex,
// byte encoder, bpe() and vocabulary, only the array growth differs.
'use strict';
const fs = require('fs');
const path = require('path');
const Module = require('module');

function readText(file) {
  return new TextDecoder('utf-8').decode(fs.readFileSync(file));
}

function loadGpt3Encoder(assets) {
  const file = path.join(assets, 'gpt-3-encoder', 'Encoder.js');
  const src = fs.readFileSync(file, 'utf8') +
    '\nmodule.exports.__ref = { bpe, pat, byte_encoder, encoder, encodeStr };\n';
  const m = new Module(file, module);
  m.filename = file;
  m.paths = Module._nodeModulePaths(path.dirname(file));
  m._compile(src, file);
  return m.exports.__ref;
}

function encodeGpt2(ref, text) {
  const ids = [];
  for (const match of text.matchAll(ref.pat)) {
    const token = ref.encodeStr(match[0]).map(x => ref.byte_encoder[x]).join('');
    for (const piece of ref.bpe(token).split(' ')) {
      const id = ref.encoder[piece];
      if (id === undefined) throw new Error(`gpt-3-encoder produced unknown token ${JSON.stringify(piece)}`);
      ids.push(id);
    }
  }
  return ids;
}

function writeIds(ids) {
  const chunks = [];
  for (let i = 0; i < ids.length; i += 65536)
    chunks.push(Array.prototype.join.call(ids.slice(i, i + 65536), ' '));
  process.stdout.write(chunks.join(' ') + '\n');
}

function cl100k(assets) {
  return require(path.join(assets, 'tiktoken')).get_encoding('cl100k_base');
}

// The native build of @anush008/tokenizers, loaded directly: setup unpacks
// the package and its -linux-x64-gnu binary side by side, without npm install.
function hfTokenizer(assets, file) {
  const native = require(path.join(path.resolve(assets), 'hf-tokenizers-linux-x64-gnu', 'tokenizers.linux-x64-gnu.node'));
  return native.Tokenizer.fromFile(file);
}

async function hfEncode(tok, text) {
  const enc = await tok.encode(text, null, { addSpecialTokens: false });
  return enc.getIds();
}

const [mode, a1, a2, a3, a4] = process.argv.slice(2);
if (mode === 'gpt2') {
  writeIds(encodeGpt2(loadGpt3Encoder(a1), readText(a2)));
} else if (mode === 'cl100k') {
  const enc = cl100k(a1);
  const text = readText(a2);
  writeIds(a3 === 'all' ? enc.encode(text, 'all') : enc.encode_ordinary(text));
  enc.free();
} else if (mode === 'bench') {
  const enc = cl100k(a1);
  const text = readText(a2);
  const bytes = fs.statSync(a2).size;
  const runs = Number(a3 || 5);
  let n = enc.encode_ordinary(text).length; // warm-up
  const times = [];
  for (let r = 0; r < runs; r++) {
    const t0 = process.hrtime.bigint();
    n = enc.encode_ordinary(text).length;
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  times.sort((x, y) => x - y);
  const med = times[Math.floor(runs / 2)];
  console.log(`tiktoken@1.0.22 (WASM) cl100k_base: ${bytes} bytes -> ${n} tokens; ${runs} runs on one thread: ` +
    `median ${med.toFixed(3)} s = ${(bytes / 1e6 / med).toFixed(2)} MB/s ` +
    `(best ${(bytes / 1e6 / times[0]).toFixed(2)}, worst ${(bytes / 1e6 / times[runs - 1]).toFixed(2)})`);
  enc.free();
} else if (mode === 'hf') {
  hfEncode(hfTokenizer(a1, a2), readText(a3)).then(writeIds);
} else if (mode === 'hfjson') {
  // a JSON list of strings (file a3) -> a JSON list of their id lists
  const tok = hfTokenizer(a1, a2);
  (async () => {
    const out = [];
    for (const text of JSON.parse(readText(a3))) out.push(Array.from(await hfEncode(tok, text)));
    process.stdout.write(JSON.stringify(out) + '\n');
  })();
} else if (mode === 'hfdecode') {
  const ids = fs.readFileSync(a3, 'utf8').split(/\s+/).filter(x => x).map(Number);
  hfTokenizer(a1, a2).decode(ids, false).then(s => process.stdout.write(Buffer.from(s, 'utf8')));
} else if (mode === 'hfbench') {
  const tok = hfTokenizer(a1, a2);
  const text = readText(a3);
  const bytes = fs.statSync(a3).size;
  const runs = Number(a4 || 5);
  (async () => {
    let n = (await hfEncode(tok, text)).length; // warm-up
    const times = [];
    for (let r = 0; r < runs; r++) {
      const t0 = process.hrtime.bigint();
      n = (await hfEncode(tok, text)).length;
      times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    times.sort((x, y) => x - y);
    const med = times[Math.floor(runs / 2)];
    console.log(`tokenizers 0.22.2 (@anush008/tokenizers@0.6.0) ${path.basename(path.dirname(path.dirname(a2)))}: ` +
      `${bytes} bytes -> ${n} tokens; ${runs} runs: median ${med.toFixed(3)} s = ${(bytes / 1e6 / med).toFixed(2)} MB/s`);
  })();
} else if (mode === 'utf8') {
  fs.writeFileSync(a2, Buffer.from(readText(a1), 'utf8'));
} else {
  console.error('usage: node tok_ref.js gpt2|cl100k|bench|hf|hfjson|hfdecode|hfbench ASSETS ... | utf8 INPUT OUTPUT');
  process.exit(2);
}
