#pragma once

// Parsing of request messages from their wire bytes with errors that name the field.
//
// Protobuf refuses a message whose proto3 `string` field holds invalid UTF-8, and gRPC answers
// a request it cannot parse with UNIMPLEMENTED and no message. Every RPC of
// TextGenerationService parses its request bytes here instead, so that such a request gets
// INVALID_ARGUMENT naming the field ("text: must be valid UTF-8",
// "stopping.stop[2]: must be valid UTF-8"). Pure functions; thread-safe.

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace pagoda::server {

// Parses `bytes` into `message` (cleared first). Errors: InvalidArgument with ErrorReason
// kInvalidField, "<path>: must be valid UTF-8" for a string field with invalid UTF-8, else
// "request: not a valid <full message name>".
absl::Status ParseMessage(absl::string_view bytes, google::protobuf::Message& message);

// The proto text path of the first string field in `bytes` (the wire form of a `descriptor`
// message, parsed without UTF-8 checks) whose value is not valid UTF-8; a map field is named
// without its key. Nullopt when there is none or the bytes do not parse at all.
std::optional<std::string> FindInvalidUtf8Field(absl::string_view bytes,
                                                const google::protobuf::Descriptor& descriptor);

}  // namespace pagoda::server
