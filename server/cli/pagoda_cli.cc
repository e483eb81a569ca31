// pagoda-cli: a small command-line client of pagodad (proto/pagoda/v1). See --help.

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/text_format.h"
#include "grpcpp/grpcpp.h"
#include "pagoda/v1/text_generation_service.grpc.pb.h"

namespace {

constexpr char kUsage[] = R"(pagoda-cli: a command-line client of pagodad.

Usage: pagoda-cli [--address HOST:PORT] [--timeout SECONDS] COMMAND [ARGS]

Commands:
  generate TEXT [options]   Complete TEXT, printing the output as it streams in.
      --max-tokens N          output tokens at most (default: up to max_model_len)
      --temperature T         0 = greedy (default 1)
      --top-p P, --top-k K, --min-p P, --seed N
      --stop STRING           a stop string (repeatable)
      --ignore-eos            do not stop at EOS
      --no-stream             one final message instead of a stream
      --print-token-ids       print the output's token ids (space-separated), not its text
      --token-ids 1,2,3       send token ids instead of TEXT
      --request-id ID, --model NAME
  tokenize TEXT [--no-special-tokens] [--pieces]
                            Print the token ids of TEXT (and their vocabulary pieces).
  detokenize ID...          Print the text of token ids.
  model-info                Print the served model's description.
  server-info               Print the server's load and state.
  abort ID...               Abort unfinished requests by request id.

Options:
  --address HOST:PORT       pagodad's gRPC address (default 127.0.0.1:50051)
  --timeout SECONDS         deadline of the call (default 600 for generate, 10 otherwise)

Security (for a pagodad started with --tls-cert-file or --auth-token-file):
  --tls                     connect with TLS, trusting the system's CA certificates
  --tls-ca-file FILE        connect with TLS, trusting the PEM CA certificates of FILE
  --tls-cert-file FILE      client certificate (PEM) for mTLS, with --tls-key-file
  --tls-key-file FILE       its private key (PEM)
  --tls-server-name NAME    the name to check in the server's certificate (default: the
                            host of --address)
  --auth-token-file FILE    send 'authorization: Bearer TOKEN' with the first token of FILE
                            (# comments and blank lines are skipped)

A summary of each generation (finish reason, token counts, latencies) goes to stderr.
)";

int Fail(const std::string& message) {
  std::fprintf(stderr, "pagoda-cli: %s\n", message.c_str());
  return 2;
}

int RpcFailed(const grpc::Status& status, const grpc::ClientContext& context) {
  std::string details;
  for (const auto& [key, value] : context.GetServerTrailingMetadata()) {
    const absl::string_view k(key.data(), key.size());
    if (k == "pagoda-error-reason" || k == "pagoda-retry-after-ms") {
      absl::StrAppend(&details, details.empty() ? " (" : ", ", k, "=",
                      absl::string_view(value.data(), value.size()));
    }
  }
  if (!details.empty()) details += ")";
  std::fprintf(stderr, "pagoda-cli: error %d: %s%s\n", static_cast<int>(status.error_code()),
               status.error_message().c_str(), details.c_str());
  return 1;
}

// The command line after the global options: positional words and --flags.
struct Args {
  std::vector<std::string> positional;
  std::multimap<std::string, std::string> flags;  // a switch maps to ""

  std::optional<std::string> Get(const std::string& name) const {
    const auto it = flags.find(name);
    if (it == flags.end()) return std::nullopt;
    return it->second;
  }
  bool Has(const std::string& name) const { return flags.contains(name); }
};

// Flags that take a value; all others are switches.
bool TakesValue(absl::string_view name) {
  static const char* const kValued[] = {
      "address",     "timeout",       "max-tokens",   "temperature",     "top-p",          "top-k",
      "min-p",       "seed",          "stop",         "token-ids",       "request-id",     "model",
      "tls-ca-file", "tls-cert-file", "tls-key-file", "tls-server-name", "auth-token-file"};
  for (const char* valued : kValued) {
    if (name == valued) return true;
  }
  return false;
}

std::optional<Args> ParseArgs(int argc, char** argv, std::string* error) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.size() > 2 && arg.rfind("--", 0) == 0) {
      std::string name = arg.substr(2);
      std::string value;
      if (const size_t eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name.resize(eq);
      } else if (TakesValue(name)) {
        if (i + 1 >= argc) {
          *error = absl::StrCat("--", name, " needs a value");
          return std::nullopt;
        }
        value = argv[++i];
      }
      args.flags.emplace(name, value);
    } else {
      args.positional.push_back(arg);
    }
  }
  return args;
}

template <typename T>
bool ParseNumber(const Args& args, const std::string& name, T* out, std::string* error) {
  const std::optional<std::string> text = args.Get(name);
  if (!text.has_value()) return true;
  bool ok = false;
  if constexpr (std::is_floating_point_v<T>) {
    double value = 0;
    ok = absl::SimpleAtod(*text, &value);
    *out = static_cast<T>(value);
  } else {
    ok = absl::SimpleAtoi(*text, out);
  }
  if (!ok) *error = absl::StrCat("--", name, ": not a number: '", *text, "'");
  return ok;
}

std::optional<pagoda::v1::GenerateRequest> BuildGenerateRequest(const Args& args,
                                                                std::string* error) {
  pagoda::v1::GenerateRequest request;
  if (const auto ids = args.Get("token-ids")) {
    for (absl::string_view id : absl::StrSplit(*ids, ',', absl::SkipWhitespace())) {
      uint32_t value = 0;
      if (!absl::SimpleAtoi(id, &value)) {
        *error = absl::StrCat("--token-ids: not a token id: '", id, "'");
        return std::nullopt;
      }
      request.mutable_token_ids()->add_ids(value);
    }
  } else if (args.positional.size() == 2) {
    request.set_text(args.positional[1]);
  } else {
    *error = "generate needs one TEXT argument (quote it) or --token-ids";
    return std::nullopt;
  }
  request.set_stream(!args.Has("no-stream"));
  if (const auto id = args.Get("request-id")) request.set_request_id(*id);
  if (const auto model = args.Get("model")) request.set_model(*model);
  pagoda::v1::SamplingParams* sampling = request.mutable_sampling();
  pagoda::v1::StoppingParams* stopping = request.mutable_stopping();
  float temperature = 0, top_p = 0, min_p = 0;
  uint32_t top_k = 0, max_tokens = 0;
  uint64_t seed = 0;
  if (!ParseNumber(args, "temperature", &temperature, error) ||
      !ParseNumber(args, "top-p", &top_p, error) || !ParseNumber(args, "min-p", &min_p, error) ||
      !ParseNumber(args, "top-k", &top_k, error) || !ParseNumber(args, "seed", &seed, error) ||
      !ParseNumber(args, "max-tokens", &max_tokens, error)) {
    return std::nullopt;
  }
  if (args.Has("temperature")) sampling->set_temperature(temperature);
  if (args.Has("top-p")) sampling->set_top_p(top_p);
  if (args.Has("min-p")) sampling->set_min_p(min_p);
  if (args.Has("top-k")) sampling->set_top_k(top_k);
  if (args.Has("seed")) sampling->set_seed(seed);
  if (args.Has("max-tokens")) stopping->set_max_tokens(max_tokens);
  const auto [begin, end] = args.flags.equal_range("stop");
  for (auto it = begin; it != end; ++it) stopping->add_stop(it->second);
  stopping->set_ignore_eos(args.Has("ignore-eos"));
  return request;
}

void PrintSummary(const pagoda::v1::GenerateResponse::Complete& complete,
                  const std::string& request_id) {
  const char* reason = pagoda::v1::FinishReason_Name(complete.finish_reason()).c_str();
  std::string stop;
  if (complete.has_stop_string())
    stop = absl::StrCat(" stop_string=\"", complete.stop_string(), "\"");
  if (complete.has_stop_token_id())
    stop = absl::StrCat(" stop_token_id=", complete.stop_token_id());
  if (complete.has_eos()) stop = " eos";
  std::fprintf(stderr,
               "[%s %s%s | prompt %u, completion %u, cached %u tokens | queue %.1f ms, ttft "
               "%.1f ms, e2e %.1f ms]\n",
               request_id.c_str(), reason, stop.c_str(), complete.usage().prompt_tokens(),
               complete.usage().completion_tokens(), complete.usage().cached_prompt_tokens(),
               complete.timings().queue_seconds() * 1e3, complete.timings().ttft_seconds() * 1e3,
               complete.timings().e2e_seconds() * 1e3);
}

int Generate(pagoda::v1::TextGeneration::Stub& stub, grpc::ClientContext& context,
             const Args& args) {
  std::string error;
  const std::optional<pagoda::v1::GenerateRequest> request = BuildGenerateRequest(args, &error);
  if (!request.has_value()) return Fail(error);
  std::unique_ptr<grpc::ClientReader<pagoda::v1::GenerateResponse>> reader =
      stub.Generate(&context, *request);
  pagoda::v1::GenerateResponse response;
  bool printed_ids = false;
  const bool print_ids = args.Has("print-token-ids");
  while (reader->Read(&response)) {
    if (response.has_chunk()) {
      const auto& chunk = response.chunk();
      if (print_ids) {
        for (const uint32_t id : chunk.token_ids()) {
          std::printf("%s%u", printed_ids ? " " : "", id);
          printed_ids = true;
        }
      } else if (!chunk.text().empty()) {
        std::fwrite(chunk.text().data(), 1, chunk.text().size(), stdout);
      } else if (chunk.token_ids_size() > 0 && request->has_token_ids()) {
        // A server without a tokenizer sends no text: show the ids.
        std::printf("%s%s", printed_ids ? " " : "", absl::StrJoin(chunk.token_ids(), " ").c_str());
        printed_ids = true;
      }
      std::fflush(stdout);
    } else if (response.has_complete()) {
      const auto& complete = response.complete();
      if (!request->stream()) {
        if (print_ids) {
          std::printf("%s", absl::StrJoin(complete.token_ids(), " ").c_str());
        } else if (!complete.text().empty() || complete.token_ids().empty()) {
          std::fwrite(complete.text().data(), 1, complete.text().size(), stdout);
        } else {
          std::printf("%s", absl::StrJoin(complete.token_ids(), " ").c_str());
        }
      }
      std::printf("\n");
      std::fflush(stdout);
      PrintSummary(complete, response.request_id());
    }
  }
  const grpc::Status status = reader->Finish();
  return status.ok() ? 0 : RpcFailed(status, context);
}

template <typename Response>
int PrintMessage(const grpc::Status& status, const grpc::ClientContext& context,
                 const Response& response) {
  if (!status.ok()) return RpcFailed(status, context);
  std::string text;
  google::protobuf::TextFormat::PrintToString(response, &text);
  std::fputs(text.c_str(), stdout);
  return 0;
}

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

// The channel credentials the security flags ask for; plaintext without them.
std::shared_ptr<grpc::ChannelCredentials> Credentials(const Args& args, std::string* error) {
  const std::optional<std::string> ca = args.Get("tls-ca-file");
  const std::optional<std::string> cert = args.Get("tls-cert-file");
  const std::optional<std::string> key = args.Get("tls-key-file");
  if (!args.Has("tls") && !ca.has_value() && !cert.has_value() && !key.has_value()) {
    return grpc::InsecureChannelCredentials();
  }
  if (cert.has_value() != key.has_value()) {
    *error = "--tls-cert-file and --tls-key-file go together";
    return nullptr;
  }
  grpc::SslCredentialsOptions ssl;
  for (const auto& [flag, path, out] : {std::tuple{"tls-ca-file", ca, &ssl.pem_root_certs},
                                        std::tuple{"tls-cert-file", cert, &ssl.pem_cert_chain},
                                        std::tuple{"tls-key-file", key, &ssl.pem_private_key}}) {
    if (!path.has_value()) continue;
    std::optional<std::string> pem = ReadFile(*path);
    if (!pem.has_value()) {
      *error = absl::StrCat("--", flag, ": cannot read '", *path, "'");
      return nullptr;
    }
    *out = *std::move(pem);
  }
  return grpc::SslCredentials(ssl);
}

// The first token of --auth-token-file, if given.
std::optional<std::string> AuthToken(const Args& args, std::string* error) {
  const std::optional<std::string> path = args.Get("auth-token-file");
  if (!path.has_value()) return std::nullopt;
  const std::optional<std::string> text = ReadFile(*path);
  if (!text.has_value()) {
    *error = absl::StrCat("--auth-token-file: cannot read '", *path, "'");
    return std::nullopt;
  }
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty() && line[0] != '#') return std::string(line);
  }
  *error = absl::StrCat("--auth-token-file: no token in '", *path, "'");
  return std::nullopt;
}

int Run(const Args& args) {
  if (args.Has("help") || args.Has("h") || args.positional.empty()) {
    std::fputs(kUsage, args.positional.empty() && !args.Has("help") ? stderr : stdout);
    return args.Has("help") ? 0 : 2;
  }
  const std::string address = args.Get("address").value_or("127.0.0.1:50051");
  const std::string& command = args.positional[0];
  double timeout_seconds = command == "generate" ? 600 : 10;
  std::string error;
  if (!ParseNumber(args, "timeout", &timeout_seconds, &error)) return Fail(error);

  const std::shared_ptr<grpc::ChannelCredentials> credentials = Credentials(args, &error);
  if (credentials == nullptr) return Fail(error);
  const std::optional<std::string> token = AuthToken(args, &error);
  if (!error.empty()) return Fail(error);
  grpc::ChannelArguments channel_args;
  if (const std::optional<std::string> name = args.Get("tls-server-name")) {
    channel_args.SetSslTargetNameOverride(*name);
  }
  auto stub = pagoda::v1::TextGeneration::NewStub(
      grpc::CreateCustomChannel(address, credentials, channel_args));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(timeout_seconds)));
  if (token.has_value()) context.AddMetadata("authorization", absl::StrCat("Bearer ", *token));

  if (command == "generate") return Generate(*stub, context, args);
  if (command == "tokenize") {
    if (args.positional.size() != 2) return Fail("tokenize needs one TEXT argument");
    pagoda::v1::TokenizeRequest request;
    request.set_text(args.positional[1]);
    request.set_no_add_special_tokens(args.Has("no-special-tokens"));
    request.set_return_token_strings(args.Has("pieces"));
    pagoda::v1::TokenizeResponse response;
    const grpc::Status status = stub->Tokenize(&context, request, &response);
    if (!status.ok()) return RpcFailed(status, context);
    std::printf("%s\n", absl::StrJoin(response.token_ids(), " ").c_str());
    if (args.Has("pieces")) {
      std::printf("%s\n", absl::StrJoin(response.token_strings(), " ").c_str());
    }
    return 0;
  }
  if (command == "detokenize") {
    pagoda::v1::DetokenizeRequest request;
    for (size_t i = 1; i < args.positional.size(); ++i) {
      uint32_t id = 0;
      if (!absl::SimpleAtoi(args.positional[i], &id)) {
        return Fail(absl::StrCat("not a token id: '", args.positional[i], "'"));
      }
      request.add_token_ids(id);
    }
    pagoda::v1::DetokenizeResponse response;
    const grpc::Status status = stub->Detokenize(&context, request, &response);
    if (!status.ok()) return RpcFailed(status, context);
    std::printf("%s\n", response.text().c_str());
    return 0;
  }
  if (command == "model-info") {
    pagoda::v1::ModelInfo response;
    return PrintMessage(stub->GetModelInfo(&context, {}, &response), context, response);
  }
  if (command == "server-info") {
    pagoda::v1::ServerInfo response;
    return PrintMessage(stub->GetServerInfo(&context, {}, &response), context, response);
  }
  if (command == "abort") {
    pagoda::v1::AbortRequest request;
    for (size_t i = 1; i < args.positional.size(); ++i) request.add_request_ids(args.positional[i]);
    pagoda::v1::AbortResponse response;
    const grpc::Status status = stub->Abort(&context, request, &response);
    if (!status.ok()) return RpcFailed(status, context);
    std::printf("num_found: %u\n", response.num_found());
    return 0;
  }
  return Fail(absl::StrCat("unknown command '", command, "' (see --help)"));
}

}  // namespace

int main(int argc, char** argv) {
  std::string error;
  const std::optional<Args> args = ParseArgs(argc, argv, &error);
  if (!args.has_value()) return Fail(error);
  return Run(*args);
}
