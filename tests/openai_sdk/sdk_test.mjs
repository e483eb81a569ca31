// The official openai npm SDK (package.json pins it) against pagodad's HTTP API: completions
// and chat completions, each whole and streamed (greedy text equal both ways, usage in the last
// streamed chunk, the assistant role in the first chat chunk), log-probabilities in both shapes,
// the models list, and API errors
// the SDK raises as a BadRequestError naming the field. The daemon must have a chat template.
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
const chatRequest = {
  model, max_completion_tokens: 10, temperature: 0, ignore_eos: true,
  messages: [{ role: "system", content: "You tell stories." },
             { role: "user", content: [{ type: "text", text: "Once upon a time" }] }] };
const chat = await client.chat.completions.create(chatRequest);
check(chat.object === "chat.completion", `chat object ${chat.object}`);
check(chat.choices.length === 1 && chat.choices[0].finish_reason === "length" &&
      chat.choices[0].message.role === "assistant" &&
      typeof chat.choices[0].message.content === "string" && chat.choices[0].message.content !== "",
      `chat choices ${JSON.stringify(chat.choices)}`);
check(chat.usage.completion_tokens === 10 && chat.usage.prompt_tokens > 0 &&
      chat.usage.total_tokens === chat.usage.prompt_tokens + 10, `chat usage ${JSON.stringify(chat.usage)}`);

const chatStream = await client.chat.completions.create({
  ...chatRequest, stream: true, stream_options: { include_usage: true } });
const chunks = [];
for await (const chunk of chatStream) chunks.push(chunk);
check(chunks.length >= 3 && chunks.every((c) => c.object === "chat.completion.chunk"),
      `chat chunks ${JSON.stringify(chunks)}`);
check(chunks[0].choices[0].delta.role === "assistant", `first chat chunk ${JSON.stringify(chunks[0])}`);
let chatText = "";
let chatFinish = null;
let chatUsage = null;
for (const chunk of chunks) {
  for (const choice of chunk.choices) {
    chatText += choice.delta.content ?? "";
    if (choice.finish_reason) chatFinish = choice.finish_reason;
  }
  if (chunk.usage) chatUsage = chunk.usage;
}
check(chatText === chat.choices[0].message.content,
      `streamed chat ${JSON.stringify(chatText)} != whole ${JSON.stringify(chat.choices[0].message.content)}`);
check(chatFinish === "length", `chat finish_reason ${chatFinish}`);
check(chunks.at(-1).usage && chunks.at(-1).choices.length === 0 && chatUsage.completion_tokens === 10 &&
      chatUsage.prompt_tokens === chat.usage.prompt_tokens, `streamed chat usage ${JSON.stringify(chunks.at(-1))}`);

// n choices: one request, n choices with indices 0..n-1, the prompt counted once.
const three = await client.chat.completions.create({ ...chatRequest, n: 3 });
check(three.choices.length === 3 && three.choices.every((c, i) => c.index === i) &&
      three.usage.prompt_tokens === chat.usage.prompt_tokens &&
      three.usage.completion_tokens === 3 * chat.usage.completion_tokens,
      `chat n=3 ${JSON.stringify(three.usage)}`);

// Log-probabilities: one entry per token, the sampled token first among the greedy top two, and
// the completions shape with the same values.
const withLogprobs = await client.chat.completions.create({ ...chatRequest, logprobs: true, top_logprobs: 2 });
const content = withLogprobs.choices[0].logprobs?.content ?? [];
check(content.length === 10 && content.every((e) => e.logprob <= 0 && e.top_logprobs.length === 2 &&
      e.top_logprobs[0].token === e.token && e.top_logprobs[0].logprob === e.logprob &&
      Array.isArray(e.bytes)), `chat logprobs ${JSON.stringify(withLogprobs.choices[0].logprobs)}`);
check(content.map((e) => e.token).join("") === withLogprobs.choices[0].message.content ||
      content.some((e) => e.token.includes("\uFFFD")),
      `chat logprob tokens ${JSON.stringify(content.map((e) => e.token))} != content`);
const completionLogprobs = (await client.completions.create({ ...request, ignore_eos: true, logprobs: 1 })).choices[0].logprobs;
check(completionLogprobs.tokens.length === 10 && completionLogprobs.token_logprobs.length === 10 &&
      completionLogprobs.top_logprobs.every((top, i) => top[completionLogprobs.tokens[i]] === completionLogprobs.token_logprobs[i]),
      `completion logprobs ${JSON.stringify(completionLogprobs)}`);

try {
  await client.chat.completions.create({ ...chatRequest, n: 500 });
  check(false, "chat n 500 was accepted");
} catch (error) {
  check(error instanceof OpenAI.BadRequestError, `chat error ${error}`);
  check(error.status === 400 && error.param === "n", `chat status ${error.status} param ${error.param}`);
}
console.log(`PASS: openai SDK, completions (${JSON.stringify(text)}) and chat completions ` +
            `(${JSON.stringify(chatText)}) whole and streamed, logprobs, models, 400s`);
