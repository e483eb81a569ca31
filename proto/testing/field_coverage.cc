#include "proto/testing/field_coverage.h"

#include "google/protobuf/descriptor.pb.h"

namespace pagoda::proto::testing {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::FileDescriptor;
using ::google::protobuf::Message;
using ::google::protobuf::Reflection;

// Fields a fully populated instance has set: all, but one per real oneof. ListFields reports a
// proto3 `optional` field when it is present, so those count like plain fields.
int FullyPopulatedFieldCount(const Descriptor& descriptor) {
  int count = descriptor.field_count();
  for (int i = 0; i < descriptor.real_oneof_decl_count(); ++i) {
    count -= descriptor.oneof_decl(i)->field_count() - 1;
  }
  return count;
}

void AddMessageTypes(const Descriptor& descriptor, std::vector<const Descriptor*>& types) {
  if (descriptor.options().map_entry()) return;
  types.push_back(&descriptor);
  for (int i = 0; i < descriptor.nested_type_count(); ++i) {
    AddMessageTypes(*descriptor.nested_type(i), types);
  }
}

}  // namespace

void FieldCoverage::Add(const Message& message) {
  const Descriptor& descriptor = *message.GetDescriptor();
  const Reflection& reflection = *message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection.ListFields(message, &fields);
  if (static_cast<int>(fields.size()) != FullyPopulatedFieldCount(descriptor)) {
    partial_instances_.push_back("an instance of " + descriptor.full_name() +
                                 " is not fully populated: " + message.ShortDebugString());
  }
  std::set<int>& numbers = fields_seen_[descriptor.full_name()];
  for (const FieldDescriptor* field : fields) {
    numbers.insert(field->number());
    if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE || field->is_map()) continue;
    if (field->is_repeated()) {
      for (int i = 0; i < reflection.FieldSize(message, field); ++i) {
        Add(reflection.GetRepeatedMessage(message, field, i));
      }
    } else {
      Add(reflection.GetMessage(message, field));
    }
  }
}

std::vector<std::string> FieldCoverage::Problems(const FileDescriptor& root) const {
  std::vector<std::string> problems = partial_instances_;
  for (const Descriptor* type : PackageMessageTypes(root)) {
    const auto seen = fields_seen_.find(type->full_name());
    if (seen == fields_seen_.end()) {
      problems.push_back("no instance of " + type->full_name() + " was added");
      continue;
    }
    for (int i = 0; i < type->field_count(); ++i) {
      if (!seen->second.contains(type->field(i)->number())) {
        problems.push_back("field " + type->field(i)->full_name() + " is never set");
      }
    }
  }
  return problems;
}

std::vector<const Descriptor*> PackageMessageTypes(const FileDescriptor& root) {
  std::vector<const Descriptor*> types;
  std::vector<const FileDescriptor*> pending = {&root};
  std::set<const FileDescriptor*> visited;
  while (!pending.empty()) {
    const FileDescriptor* file = pending.back();
    pending.pop_back();
    if (file->package() != root.package() || !visited.insert(file).second) continue;
    for (int i = 0; i < file->message_type_count(); ++i) {
      AddMessageTypes(*file->message_type(i), types);
    }
    for (int i = 0; i < file->dependency_count(); ++i) pending.push_back(file->dependency(i));
  }
  return types;
}

}  // namespace pagoda::proto::testing
