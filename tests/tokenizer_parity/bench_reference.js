// Encode throughput of Hugging Face's reference implementation (npm `tokenizers`, the Node
// binding of the Rust library) on the text model/tokenizer_benchmark.cc uses: the regular files
// of /usr/share/common-licenses sorted by name, concatenated, repeated 4 times. One encode at a
// time (the binding runs each call on one worker thread); reports MB/s (1e6 bytes) of input.
//
//   node bench_reference.js NAME=TOKENIZER_JSON [NAME=TOKENIZER_JSON ...]
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

function benchmarkText() {
  const dir = '/usr/share/common-licenses';
  const files = fs.readdirSync(dir)
    .filter((f) => { const s = fs.lstatSync(path.join(dir, f)); return s.isFile() && !s.isSymbolicLink(); })
    .sort();
  const once = Buffer.concat(files.map((f) => fs.readFileSync(path.join(dir, f))));
  return Buffer.concat([once, once, once, once]);
}

function chunks(bytes) {
  const out = [];
  let pos = 0;
  while (pos < bytes.length) {
    let end = bytes.indexOf(0x0a, Math.min(pos + 1024, bytes.length));
    end = end === -1 ? bytes.length : end + 1;
    out.push(bytes.subarray(pos, end).toString('utf8'));
    pos = end;
  }
  return out;
}

async function timeIt(fn, minSeconds) {
  await fn();  // warm-up (also fills the reference's word cache, as our benchmark's warm-up does)
  let runs = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < minSeconds) {
    await fn();
    runs += 1;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  }
  return elapsed / runs;
}

async function main() {
  const bytes = benchmarkText();
  const text = bytes.toString('utf8');
  const parts = chunks(bytes);
  for (const arg of process.argv.slice(2)) {
    const [name, file] = arg.split('=');
    const tokenizer = Tokenizer.fromFile(file);
    const whole = await timeIt(() => tokenizer.encode(text, null, { addSpecialTokens: false }), 3);
    const chunked = await timeIt(async () => {
      for (const p of parts) await tokenizer.encode(p, null, { addSpecialTokens: false });
    }, 3);
    const mb = bytes.length / 1e6;
    console.log(`${name}\twhole ${(mb / whole).toFixed(2)} MB/s\tchunks ${(mb / chunked).toFixed(2)} MB/s\t(${bytes.length} bytes, ${parts.length} chunks)`);
  }
}

main().catch((err) => { console.error(err); process.exit(1); });
