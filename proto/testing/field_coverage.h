#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace pagoda::proto::testing {

// Checks, by reflection, that a set of "fully populated" test messages really sets every field
// of every message type of a proto package, so that a field added to the .proto without being
// added to the test builders fails a test.
//
// Each added instance must set all of its fields, except that a oneof sets exactly one member
// (proto3 `optional` fields must be set too: their synthetic oneofs do not count as oneofs).
// Sub-messages are checked the same way, recursively; map entries are not visited. Across all
// instances, every member of every oneof must be set at least once.
//
// Not thread-safe; meant for one test body.
class FieldCoverage {
 public:
  // Records the fields set in `message` and, recursively, in its sub-messages.
  void Add(const google::protobuf::Message& message);

  // One human-readable line per problem, empty when there is none: an added instance that
  // leaves a field unset; a message type declared in `root` or in a file that `root` imports
  // (transitively, within `root`'s package) that was never added; a field that no added
  // instance sets.
  std::vector<std::string> Problems(const google::protobuf::FileDescriptor& root) const;

 private:
  // Message full name -> numbers of the fields set in some added instance of it.
  std::map<std::string, std::set<int>> fields_seen_;
  std::vector<std::string> partial_instances_;
};

// Every message type (nested ones included, map entries excluded) declared in `root` or in a
// file it imports transitively, counting only files of `root`'s package.
std::vector<const google::protobuf::Descriptor*> PackageMessageTypes(
    const google::protobuf::FileDescriptor& root);

}  // namespace pagoda::proto::testing
