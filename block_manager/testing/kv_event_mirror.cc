#include "block_manager/testing/kv_event_mirror.h"

#include "absl/strings/str_cat.h"

namespace pagoda::block_manager::testing {

absl::Status KvEventMirror::ApplyStored(const KvCacheEvent& event, int block_size) {
  const size_t n = event.block_hashes.size();
  if (n == 0 || event.token_ids.size() != n * block_size || event.extra_keys.size() != n) {
    return absl::InternalError("BlockStored with mismatched hashes, tokens and extra keys");
  }
  for (size_t i = 0; i < n; ++i) {
    Block block{.parent = i == 0 ? event.parent_block_hash : event.block_hashes[i - 1],
                .tokens = std::vector<TokenId>(event.token_ids.begin() + i * block_size,
                                               event.token_ids.begin() + (i + 1) * block_size),
                .extra_key = event.extra_keys[i]};
    if (!blocks_.emplace(event.block_hashes[i], std::move(block)).second) {
      return absl::InternalError(
          absl::StrCat("block ", event.block_hashes[i], " stored twice without a removal"));
    }
  }
  return absl::OkStatus();
}

absl::Status KvEventMirror::Apply(absl::Span<const KvCacheEvent> events, int block_size) {
  for (const KvCacheEvent& event : events) {
    switch (event.kind) {
      case KvCacheEvent::Kind::kBlockStored:
        if (absl::Status status = ApplyStored(event, block_size); !status.ok()) return status;
        break;
      case KvCacheEvent::Kind::kBlockRemoved:
        for (const uint64_t hash : event.block_hashes) {
          if (blocks_.erase(hash) == 0) {
            return absl::InternalError(absl::StrCat("removal of unknown block ", hash));
          }
        }
        break;
      case KvCacheEvent::Kind::kAllBlocksCleared:
        blocks_.clear();
        break;
    }
  }
  return absl::OkStatus();
}

absl::Status KvEventMirror::Compare(absl::Span<const CachedBlockInfo> blocks) const {
  if (blocks.size() != blocks_.size()) {
    return absl::InternalError(absl::StrCat("events describe ", blocks_.size(),
                                            " cached blocks, the pool holds ", blocks.size()));
  }
  for (const CachedBlockInfo& info : blocks) {
    const auto it = blocks_.find(info.block_hash);
    if (it == blocks_.end()) {
      return absl::InternalError(absl::StrCat("cached block ", info.block_hash, " never stored"));
    }
    const std::optional<std::string> extra =
        info.extra_key.empty() ? std::nullopt : std::optional<std::string>(info.extra_key);
    if (it->second.parent != info.parent_block_hash || it->second.tokens != info.token_ids ||
        it->second.extra_key != extra) {
      return absl::InternalError(
          absl::StrCat("block ", info.block_hash, ": parent, tokens or extra key differ"));
    }
  }
  return absl::OkStatus();
}

}  // namespace pagoda::block_manager::testing
