#include "kv_events/event_encoding.h"

#include <cstdint>

// msgpuck (Debian's libmsgpuck-dev) is header-only apart from two tables; this file defines
// them (MP_SOURCE), for the whole program.
#define MP_SOURCE 1
#include <msgpuck.h>

namespace pagoda::kv_events {
namespace {

using block_manager::KvCacheEvent;

// Appends msgpack values to a string. Each scalar takes at most 9 bytes.
class Writer {
 public:
  explicit Writer(std::string* out) : out_(out) {}

  void Array(uint32_t n) {
    Put(mp_sizeof_array(n), [n](char* p) { return mp_encode_array(p, n); });
  }
  void Map(uint32_t n) {
    Put(mp_sizeof_map(n), [n](char* p) { return mp_encode_map(p, n); });
  }
  void Nil() {
    Put(mp_sizeof_nil(), [](char* p) { return mp_encode_nil(p); });
  }
  void Uint(uint64_t v) {
    Put(mp_sizeof_uint(v), [v](char* p) { return mp_encode_uint(p, v); });
  }
  void Int(int64_t v) {
    if (v >= 0) return Uint(static_cast<uint64_t>(v));
    Put(mp_sizeof_int(v), [v](char* p) { return mp_encode_int(p, v); });
  }
  void Double(double v) {
    Put(mp_sizeof_double(v), [v](char* p) { return mp_encode_double(p, v); });
  }
  void Str(absl::string_view s) {
    const auto n = static_cast<uint32_t>(s.size());
    Put(mp_sizeof_str(n), [&](char* p) { return mp_encode_str(p, s.data(), n); });
  }

 private:
  template <typename Encode>
  void Put(uint32_t size, Encode encode) {
    const size_t at = out_->size();
    out_->resize(at + size);
    encode(out_->data() + at);
  }

  std::string* out_;
};

void EncodeHashes(const KvCacheEvent& event, Writer& w) {
  w.Str("block_hashes");
  w.Array(static_cast<uint32_t>(event.block_hashes.size()));
  for (const uint64_t hash : event.block_hashes) w.Uint(hash);
}

// The event's own tier, else the engine's pool's.
absl::string_view MediumOf(const KvCacheEvent& event, const EncodingOptions& options) {
  return event.medium.empty() ? absl::string_view(options.medium) : event.medium;
}

void EncodeStored(const KvCacheEvent& event, const EncodingOptions& options, Writer& w) {
  w.Map(11);
  w.Str("type");
  w.Str("BlockStored");
  EncodeHashes(event, w);
  w.Str("parent_block_hash");
  if (event.parent_block_hash.has_value()) {
    w.Uint(*event.parent_block_hash);
  } else {
    w.Nil();
  }
  w.Str("token_ids");
  w.Array(static_cast<uint32_t>(event.token_ids.size()));
  for (const TokenId token : event.token_ids) w.Int(token);
  w.Str("block_size");
  w.Int(options.block_size);
  w.Str("lora_id");
  w.Nil();
  w.Str("medium");
  w.Str(MediumOf(event, options));
  w.Str("lora_name");
  w.Nil();
  // One entry per block: the extra keys its hash folded in, as a tuple, or nil.
  w.Str("extra_keys");
  w.Array(static_cast<uint32_t>(event.extra_keys.size()));
  for (const std::optional<std::string>& key : event.extra_keys) {
    if (key.has_value()) {
      w.Array(1);
      w.Str(*key);
    } else {
      w.Nil();
    }
  }
  w.Str("group_idx");
  w.Uint(0);
  w.Str("kv_cache_spec_kind");
  w.Str("full_attention");
}

void EncodeEvent(const KvCacheEvent& event, const EncodingOptions& options, Writer& w) {
  switch (event.kind) {
    case KvCacheEvent::Kind::kBlockStored:
      EncodeStored(event, options, w);
      return;
    case KvCacheEvent::Kind::kBlockRemoved:
      w.Map(4);
      w.Str("type");
      w.Str("BlockRemoved");
      EncodeHashes(event, w);
      w.Str("medium");
      w.Str(MediumOf(event, options));
      w.Str("group_idx");
      w.Uint(0);
      return;
    case KvCacheEvent::Kind::kAllBlocksCleared:
      w.Map(1);
      w.Str("type");
      w.Str("AllBlocksCleared");
      return;
  }
}

}  // namespace

std::string EncodeEventBatch(double timestamp_seconds, absl::Span<const KvCacheEvent> events,
                             const EncodingOptions& options) {
  std::string out;
  Writer w(&out);
  w.Array(3);
  w.Double(timestamp_seconds);
  w.Array(static_cast<uint32_t>(events.size()));
  for (const KvCacheEvent& event : events) EncodeEvent(event, options, w);
  if (options.data_parallel_rank.has_value()) {
    w.Int(*options.data_parallel_rank);
  } else {
    w.Nil();
  }
  return out;
}

}  // namespace pagoda::kv_events
