#pragma once

// Test support: decodes msgpack into a tree, with msgpuck (whose out-of-line tables
// kv_events/event_encoding.cc defines), so tests can check what was encoded.

#include <msgpuck.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace pagoda::kv_events::testing {

struct MsgNode {
  enum class Type { kNil, kUint, kInt, kDouble, kStr, kArray, kMap, kOther };
  Type type = Type::kNil;
  uint64_t uint_value = 0;
  int64_t int_value = 0;
  double double_value = 0;
  std::string str;
  std::vector<MsgNode> items;                        // kArray
  std::vector<std::pair<std::string, MsgNode>> map;  // kMap (string keys only)

  // The value of `key` in a map, or null.
  const MsgNode* Find(absl::string_view key) const {
    for (const auto& [k, v] : map) {
      if (k == key) return &v;
    }
    return nullptr;
  }
  std::vector<std::string> Keys() const {
    std::vector<std::string> keys;
    for (const auto& [k, v] : map) keys.push_back(k);
    return keys;
  }
};

inline MsgNode DecodeNode(const char** p) {
  MsgNode node;
  switch (mp_typeof(**p)) {
    case MP_NIL:
      mp_decode_nil(p);
      node.type = MsgNode::Type::kNil;
      break;
    case MP_UINT:
      node.type = MsgNode::Type::kUint;
      node.uint_value = mp_decode_uint(p);
      break;
    case MP_INT:
      node.type = MsgNode::Type::kInt;
      node.int_value = mp_decode_int(p);
      break;
    case MP_DOUBLE:
      node.type = MsgNode::Type::kDouble;
      node.double_value = mp_decode_double(p);
      break;
    case MP_STR: {
      uint32_t len = 0;
      const char* s = mp_decode_str(p, &len);
      node.type = MsgNode::Type::kStr;
      node.str.assign(s, len);
      break;
    }
    case MP_ARRAY: {
      node.type = MsgNode::Type::kArray;
      const uint32_t n = mp_decode_array(p);
      for (uint32_t i = 0; i < n; ++i) node.items.push_back(DecodeNode(p));
      break;
    }
    case MP_MAP: {
      node.type = MsgNode::Type::kMap;
      const uint32_t n = mp_decode_map(p);
      for (uint32_t i = 0; i < n; ++i) {
        MsgNode key = DecodeNode(p);
        node.map.emplace_back(key.str, DecodeNode(p));
      }
      break;
    }
    default:
      node.type = MsgNode::Type::kOther;
      mp_next(p);
      break;
  }
  return node;
}

// The tree of `bytes`, or nullopt unless they are exactly one well-formed msgpack value.
inline std::optional<MsgNode> DecodeMsgpack(absl::string_view bytes) {
  const char* check = bytes.data();
  if (bytes.empty() || mp_check(&check, bytes.data() + bytes.size()) != 0 ||
      check != bytes.data() + bytes.size()) {
    return std::nullopt;
  }
  const char* p = bytes.data();
  return DecodeNode(&p);
}

}  // namespace pagoda::kv_events::testing
