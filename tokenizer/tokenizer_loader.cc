#include "tokenizer/tokenizer_loader.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "tokenizer/byte_tokenizer.h"

namespace pagoda::tokenizer {
namespace {

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path.string()));
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// A token named in tokenizer_config.json: "text", {"content": "text", ...} or null.
absl::StatusOr<std::optional<std::string>> TokenContent(const Json& config, std::string_view key) {
  const Json* field = FindField(config, key);
  if (field == nullptr || field->is_null()) return std::optional<std::string>();
  if (field->is_string()) return std::optional<std::string>(field->get<std::string>());
  PAGODA_ASSIGN_OR_RETURN(std::string content, GetString(*field, "content"));
  return std::optional<std::string>(std::move(content));
}

absl::Status AddGenerationEos(const Json& generation, SpecialTokenConfig& config) {
  const Json* eos = FindField(generation, "eos_token_id");
  if (eos == nullptr || eos->is_null()) return absl::OkStatus();
  const Json list = eos->is_array() ? *eos : Json::array({*eos});
  for (const Json& id : list) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
      return absl::InvalidArgumentError("generation_config.json: bad eos_token_id");
    }
    config.eos_ids.push_back(static_cast<TokenId>(id.get<int64_t>()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SpecialTokenConfig> ParseSpecialTokenConfig(std::string_view tokenizer_config,
                                                           std::string_view generation_config) {
  SpecialTokenConfig config;
  if (!tokenizer_config.empty()) {
    PAGODA_ASSIGN_OR_RETURN(const Json json, ParseJson(tokenizer_config, "tokenizer_config.json"));
    PAGODA_ASSIGN_OR_RETURN(config.bos_token, TokenContent(json, "bos_token"));
    PAGODA_ASSIGN_OR_RETURN(const std::optional<std::string> eos, TokenContent(json, "eos_token"));
    if (eos.has_value()) config.eos_tokens.push_back(*eos);
  }
  if (!generation_config.empty()) {
    PAGODA_ASSIGN_OR_RETURN(const Json json,
                            ParseJson(generation_config, "generation_config.json"));
    PAGODA_RETURN_IF_ERROR(AddGenerationEos(json, config));
  }
  return config;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir) {
  const std::filesystem::path dir(model_dir);
  std::error_code error;
  if (!std::filesystem::is_directory(dir, error)) {
    return absl::NotFoundError(absl::StrCat("model directory ", model_dir, " does not exist"));
  }
  const std::filesystem::path tokenizer_json = dir / "tokenizer.json";
  if (!std::filesystem::exists(tokenizer_json, error)) return std::make_unique<ByteTokenizer>();
  PAGODA_ASSIGN_OR_RETURN(const std::string json_text, ReadFile(tokenizer_json));
  std::string tokenizer_config, generation_config;
  if (std::filesystem::exists(dir / "tokenizer_config.json", error)) {
    PAGODA_ASSIGN_OR_RETURN(tokenizer_config, ReadFile(dir / "tokenizer_config.json"));
  }
  if (std::filesystem::exists(dir / "generation_config.json", error)) {
    PAGODA_ASSIGN_OR_RETURN(generation_config, ReadFile(dir / "generation_config.json"));
  }
  PAGODA_ASSIGN_OR_RETURN(const SpecialTokenConfig config,
                          ParseSpecialTokenConfig(tokenizer_config, generation_config));
  auto tokenizer = HfTokenizer::Create(json_text, config);
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(tokenizer_json.string(), ": ", tokenizer.status().message()));
  }
  return std::unique_ptr<Tokenizer>(std::move(tokenizer).value());
}

}  // namespace pagoda::tokenizer
