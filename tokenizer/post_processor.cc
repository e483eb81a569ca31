#include "tokenizer/post_processor.h"

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace pagoda::tokenizer {
namespace {

class TemplatePostProcessor final : public PostProcessor {
 public:
  // One template item: the ids of a special token, or nullopt for the input sequence ("A").
  using Item = std::optional<std::vector<TokenId>>;
  explicit TemplatePostProcessor(std::vector<Item> single) : single_(std::move(single)) {}

  void AddSpecialTokens(std::vector<TokenId>& ids) const override {
    std::vector<TokenId> out;
    out.reserve(ids.size() + single_.size());
    for (const Item& item : single_) {
      if (item.has_value()) {
        out.insert(out.end(), item->begin(), item->end());
      } else {
        out.insert(out.end(), ids.begin(), ids.end());
      }
    }
    ids = std::move(out);
  }

 private:
  std::vector<Item> single_;
};

class NoOpPostProcessor final : public PostProcessor {
 public:
  void AddSpecialTokens(std::vector<TokenId>& /*ids*/) const override {}
};

class SequencePostProcessor final : public PostProcessor {
 public:
  explicit SequencePostProcessor(std::vector<std::unique_ptr<PostProcessor>> parts)
      : parts_(std::move(parts)) {}
  void AddSpecialTokens(std::vector<TokenId>& ids) const override {
    for (const auto& part : parts_) part->AddSpecialTokens(ids);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

absl::StatusOr<std::vector<TokenId>> SpecialTokenIds(const Json& special_tokens,
                                                     const std::string& name) {
  const Json* entry = FindField(special_tokens, name);
  const Json* ids = entry == nullptr ? nullptr : FindField(*entry, "ids");
  if (ids == nullptr || !ids->is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat("TemplateProcessing: special token \"", name, "\" has no ids"));
  }
  std::vector<TokenId> out;
  for (const Json& id : *ids) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
      return absl::InvalidArgumentError("TemplateProcessing: bad special token id");
    }
    out.push_back(static_cast<TokenId>(id.get<int64_t>()));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<PostProcessor>> CreateTemplate(const Json& config) {
  const Json* single = FindField(config, "single");
  const Json* special_tokens = FindField(config, "special_tokens");
  if (single == nullptr || !single->is_array() || special_tokens == nullptr) {
    return absl::InvalidArgumentError("TemplateProcessing needs \"single\" and \"special_tokens\"");
  }
  std::vector<TemplatePostProcessor::Item> items;
  for (const Json& item : *single) {
    if (const Json* special = FindField(item, "SpecialToken")) {
      PAGODA_ASSIGN_OR_RETURN(const std::string name, GetString(*special, "id"));
      PAGODA_ASSIGN_OR_RETURN(std::vector<TokenId> ids, SpecialTokenIds(*special_tokens, name));
      items.emplace_back(std::move(ids));
    } else if (FindField(item, "Sequence") != nullptr) {
      items.emplace_back(std::nullopt);
    } else {
      return absl::InvalidArgumentError("TemplateProcessing: unknown template item");
    }
  }
  return std::make_unique<TemplatePostProcessor>(std::move(items));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostProcessor>> CreatePostProcessor(const Json& config) {
  PAGODA_ASSIGN_OR_RETURN(const std::string type, GetType(config, "post_processor"));
  if (type == "TemplateProcessing") return CreateTemplate(config);
  if (type == "ByteLevel") return std::make_unique<NoOpPostProcessor>();
  if (type == "Sequence") {
    const Json* list = FindField(config, "processors");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError("Sequence post_processor needs a \"processors\" array");
    }
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (const Json& item : *list) {
      PAGODA_ASSIGN_OR_RETURN(auto part, CreatePostProcessor(item));
      parts.push_back(std::move(part));
    }
    return std::make_unique<SequencePostProcessor>(std::move(parts));
  }
  return absl::UnimplementedError(absl::StrCat("unsupported post_processor type \"", type, "\""));
}

}  // namespace pagoda::tokenizer
