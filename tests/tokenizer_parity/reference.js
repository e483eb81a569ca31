// Writes the reference (Hugging Face `tokenizers`, Node binding of the Rust library) outputs for
// the requests in a JSON-lines file, one output line per request line, in the same order.
//
//   node reference.js TOKENIZER_JSON REQUESTS_JSONL OUTPUT_JSONL
//
// Request lines:
//   {"text_hex": "<bytes of the input, hex>"}  encode. The bytes are decoded to a JS string the
//       way Node decodes UTF-8 (each maximal invalid subsequence becomes U+FFFD), which is the
//       policy Pagoda's tokenizer applies to invalid UTF-8.
//   {"ids": [1, 2, 3]}                          decode.
// Output lines (decoded text as hex of its UTF-8 bytes, so no JSON escaping is involved):
//   encode: {"ids": [...add_special_tokens=true], "ids_plain": [...false],
//            "text_hex": decode(ids, false), "text_skip_hex": decode(ids, true)}
//   decode: {"text_hex": decode(ids, false), "text_skip_hex": decode(ids, true)}
'use strict';
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

const hex = (s) => Buffer.from(s, 'utf8').toString('hex');

async function main() {
  const [tokenizerPath, requestsPath, outputPath] = process.argv.slice(2);
  if (!outputPath) {
    console.error('usage: node reference.js TOKENIZER_JSON REQUESTS_JSONL OUTPUT_JSONL');
    process.exit(2);
  }
  const tokenizer = Tokenizer.fromFile(tokenizerPath);
  const lines = fs.readFileSync(requestsPath, 'utf8').split('\n').filter((l) => l.length > 0);
  const out = [];
  for (const line of lines) {
    const request = JSON.parse(line);
    if (request.text_hex !== undefined) {
      const text = Buffer.from(request.text_hex, 'hex').toString('utf8');
      const withSpecial = await tokenizer.encode(text, null, { addSpecialTokens: true });
      const plain = await tokenizer.encode(text, null, { addSpecialTokens: false });
      const ids = withSpecial.getIds();
      out.push(JSON.stringify({
        ids,
        ids_plain: plain.getIds(),
        text_hex: hex(await tokenizer.decode(ids, false)),
        text_skip_hex: hex(await tokenizer.decode(ids, true)),
      }));
    } else {
      out.push(JSON.stringify({
        text_hex: hex(await tokenizer.decode(request.ids, false)),
        text_skip_hex: hex(await tokenizer.decode(request.ids, true)),
      }));
    }
  }
  fs.writeFileSync(outputPath, out.join('\n') + '\n');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
