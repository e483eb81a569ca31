#include "server/message_parsing.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "google/protobuf/unknown_field_set.h"
#include "common/utf8.h"
#include "server/error_reason.h"

namespace pagoda::server {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

// Nesting deeper than any of our messages is not searched (and protobuf's own parser limits
// recursion anyway).
constexpr int kMaxDepth = 16;

std::optional<std::string> Find(const std::string& bytes, const Descriptor& descriptor,
                                const std::string& prefix, int depth) {
  if (depth > kMaxDepth) return std::nullopt;
  UnknownFieldSet fields;
  if (!fields.ParseFromString(bytes)) return std::nullopt;
  std::map<int, int> occurrences;  // field number -> entries seen so far
  for (int i = 0; i < fields.field_count(); ++i) {
    const UnknownField& field = fields.field(i);
    const int index = occurrences[field.number()]++;
    if (field.type() != UnknownField::TYPE_LENGTH_DELIMITED) continue;
    const FieldDescriptor* fd = descriptor.FindFieldByNumber(field.number());
    if (fd == nullptr) continue;
    std::string path = absl::StrCat(prefix, fd->name());
    if (fd->is_repeated() && !fd->is_map()) absl::StrAppend(&path, "[", index, "]");
    if (fd->type() == FieldDescriptor::TYPE_STRING) {
      if (!common::IsValidUtf8(field.length_delimited())) return path;
    } else if (fd->type() == FieldDescriptor::TYPE_MESSAGE) {
      const std::optional<std::string> inner =
          Find(field.length_delimited(), *fd->message_type(), path + ".", depth + 1);
      if (inner.has_value()) return fd->is_map() ? path : inner;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> FindInvalidUtf8Field(absl::string_view bytes,
                                                const Descriptor& descriptor) {
  return Find(std::string(bytes), descriptor, "", 0);
}

absl::Status ParseMessage(absl::string_view bytes, google::protobuf::Message& message) {
  if (message.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::OkStatus();
  }
  const std::optional<std::string> field = FindInvalidUtf8Field(bytes, *message.GetDescriptor());
  return WithErrorReason(
      absl::InvalidArgumentError(
          field.has_value()
              ? absl::StrCat(*field, ": must be valid UTF-8")
              : absl::StrCat("request: not a valid ", message.GetDescriptor()->full_name())),
      ErrorReason::kInvalidField);
}

}  // namespace pagoda::server
