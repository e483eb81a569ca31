#pragma once

// Reading and writing safetensors files (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length N, N bytes of JSON {name: {"dtype", "shape", "data_offsets":
// [begin, end]}, "__metadata__": {...}}, then the data section; offsets are relative to it.
//
// Files are memory-mapped read-only; tensors point into the mapping. Every header field is
// validated against the file size, so a truncated or malicious file gives an error, never a
// crash or an out-of-bounds read.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/dtype.h"

namespace pagoda::model {

// A read-only memory mapping of a whole file; unmapped on destruction. Move-only.
class MappedFile {
 public:
  static absl::StatusOr<MappedFile> Open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  // Valid while this object lives. Empty for an empty file.
  absl::Span<const uint8_t> bytes() const { return {data_, size_}; }

 private:
  MappedFile(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// One tensor of a safetensors file.
struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // row-major; empty for a scalar
  int64_t data_begin = 0;      // byte offsets into the data section, begin <= end
  int64_t data_end = 0;
  // The tensor's bytes (data_end - data_begin of them) inside the buffer that was parsed or the
  // mapping of the file that owns this TensorInfo. Not necessarily aligned to the element size.
  const uint8_t* data = nullptr;

  int64_t num_elements() const;
  int64_t size_bytes() const { return data_end - data_begin; }
};

// The parsed header of a safetensors buffer.
struct SafetensorsHeader {
  std::map<std::string, std::string> metadata;  // "__metadata__" string values
  std::vector<TensorInfo> tensors;              // sorted by name; data points into the buffer
  int64_t data_section_offset = 0;              // 8 + N
};

// Parses and validates `bytes` as a whole safetensors file: N within the buffer, JSON valid,
// dtypes F32/BF16/F16 (others: an error naming the tensor and dtype), shape product times
// element size == end - begin without overflow, offsets inside the data section, no two tensors
// overlapping. The result's pointers point into `bytes`. Never throws or reads out of bounds.
absl::StatusOr<SafetensorsHeader> ParseSafetensors(absl::Span<const uint8_t> bytes);

// A memory-mapped safetensors file. Immutable after Open(): safe to read from any thread.
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  // nullptr when there is no such tensor. The pointer and its data live as long as this object.
  const TensorInfo* Find(std::string_view name) const;
  // All tensor names, sorted.
  std::vector<std::string> names() const;
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const std::string& path() const { return path_; }
  // Whether [data, data + size) lies inside this file's mapping.
  bool Maps(const void* data, int64_t size) const;

 private:
  SafetensorsFile(std::string path, MappedFile file, SafetensorsHeader header)
      : path_(std::move(path)), file_(std::move(file)), header_(std::move(header)) {}

  std::string path_;
  MappedFile file_;
  SafetensorsHeader header_;
};

// The tensors of a model directory: model.safetensors, or the shards listed by the "weight_map"
// of model.safetensors.index.json (each tensor must be in the shard the index names; a name in
// two shards is an error). Immutable after Open(): safe to read from any thread.
class SafetensorsCheckpoint {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Open(const std::string& model_dir);

  // nullptr when there is no such tensor. Lives as long as this object.
  const TensorInfo* Find(std::string_view name) const;
  std::vector<std::string> names() const;  // sorted
  int num_files() const { return static_cast<int>(files_.size()); }
  // Whether [data, data + size) lies inside one of the mapped files (a zero-copy tensor's bytes).
  bool Maps(const void* data, int64_t size) const;

 private:
  SafetensorsCheckpoint() = default;
  absl::Status AddFile(std::unique_ptr<SafetensorsFile> file);

  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorInfo*, std::less<>> index_;
};

// Builds a safetensors file: tensors are written in name order, contiguously (as the reference
// implementation requires), after a header padded with spaces so that the data section starts
// at an 8-byte boundary; "__metadata__" is {"format": "pt"}. Not thread-safe.
class SafetensorsWriter {
 public:
  // Adds a tensor from its raw little-endian bytes; their size must equal the shape's product
  // times DTypeSize(dtype). A repeated name or negative dimension is an error.
  absl::Status Add(std::string name, DType dtype, std::vector<int64_t> shape,
                   absl::Span<const uint8_t> bytes);
  // Adds float values, converted to `dtype` (round to nearest even); one value per element.
  absl::Status AddFloats(std::string name, DType dtype, std::vector<int64_t> shape,
                         absl::Span<const float> values);

  // The whole file.
  std::string Serialize() const;
  absl::Status WriteFile(const std::string& path) const;

 private:
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    std::string bytes;
  };
  std::map<std::string, Entry> tensors_;
};

}  // namespace pagoda::model
