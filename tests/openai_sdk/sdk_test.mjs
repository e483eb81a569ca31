// The official openai npm SDK (package.json pins it) against pagodad's HTTP API: completions
// whole and streamed (greedy text equal both ways, usage in the last streamed chunk), the
// models list, and an API error the SDK raises as a BadRequestError naming the field.
//
// Usage: node sdk_test.mjs BASE_URL MODEL   (BASE_URL such as http://127.0.0.1:8000/v1)

import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 60_000 });

function check(condition, message) {
  if (!condition) {
    console.log("FAIL:", message);
    process.exit(1);
  }
}

const models = await client.models.list();
check(models.data.length === 1 && models.data[0].id === model, `models: ${JSON.stringify(models.data)}`);

const request = { model, prompt: "Once upon a time", max_tokens: 10, temperature: 0 };
const whole = await client.completions.create({ ...request, ignore_eos: true });
check(whole.object === "text_completion", `object ${whole.object}`);
check(whole.choices.length === 1 && whole.choices[0].finish_reason === "length",
      `choices ${JSON.stringify(whole.choices)}`);
check(whole.usage.completion_tokens === 10, `usage ${JSON.stringify(whole.usage)}`);

const stream = await client.completions.create({
  ...request, ignore_eos: true, stream: true, stream_options: { include_usage: true } });
let text = "";
let usage = null;
let finish = null;
for await (const chunk of stream) {
  for (const choice of chunk.choices) {
    text += choice.text;
    if (choice.finish_reason) finish = choice.finish_reason;
  }
  if (chunk.usage) usage = chunk.usage;
}
check(text === whole.choices[0].text, `streamed ${JSON.stringify(text)} != whole ${JSON.stringify(whole.choices[0].text)}`);
check(finish === "length", `finish_reason ${finish}`);
check(usage && usage.completion_tokens === 10 && usage.prompt_tokens === whole.usage.prompt_tokens,
      `streamed usage ${JSON.stringify(usage)}`);

try {
  await client.completions.create({ ...request, temperature: -1 });
  check(false, "temperature -1 was accepted");
} catch (error) {
  check(error instanceof OpenAI.BadRequestError, `error ${error}`);
  check(error.status === 400 && error.param === "temperature", `status ${error.status} param ${error.param}`);
}
console.log(`PASS: openai SDK, completions whole and streamed (${JSON.stringify(text)}), models, 400`);
