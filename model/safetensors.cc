#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace pagoda::model {
namespace {

using Json = nlohmann::json;

// The reference implementation refuses headers above 100 MB; so do we, which also bounds the
// memory a malicious length can make us spend on JSON.
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

absl::Status TensorError(absl::string_view name, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors: tensor \"", name, "\": ", problem));
}

std::optional<DType> DTypeFromName(std::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "BF16") return DType::kBF16;
  if (name == "F16") return DType::kF16;
  return std::nullopt;
}

// A non-negative JSON integer as int64; nullopt for anything else (negative, float, too big).
std::optional<int64_t> NonNegativeInt(const Json& value) {
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (value.is_number_integer()) {
    const int64_t i = value.get<int64_t>();
    if (i >= 0) return i;
  }
  return std::nullopt;
}

absl::StatusOr<std::vector<int64_t>> ParseShape(absl::string_view name, const Json& entry) {
  const auto it = entry.find("shape");
  if (it == entry.end() || !it->is_array()) return TensorError(name, "\"shape\" is not a list");
  std::vector<int64_t> shape;
  for (const Json& dim : *it) {
    const std::optional<int64_t> value = NonNegativeInt(dim);
    if (!value.has_value()) return TensorError(name, "shape has a non-integer or negative dim");
    shape.push_back(*value);
  }
  return shape;
}

// Parses one tensor entry; offsets are checked against `data_size`, the data section's length.
absl::StatusOr<TensorInfo> ParseTensorEntry(const std::string& name, const Json& entry,
                                            int64_t data_size) {
  if (!entry.is_object()) return TensorError(name, "entry is not an object");
  const auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) {
    return TensorError(name, "\"dtype\" is not a string");
  }
  const std::string dtype_name = dtype_it->get<std::string>();
  const std::optional<DType> dtype = DTypeFromName(dtype_name);
  if (!dtype.has_value()) {
    return TensorError(
        name, absl::StrCat("unsupported dtype \"", dtype_name, "\" (supported: F32, BF16, F16)"));
  }
  TensorInfo info;
  info.name = name;
  info.dtype = *dtype;
  PAGODA_ASSIGN_OR_RETURN(info.shape, ParseShape(name, entry));
  const auto offsets = entry.find("data_offsets");
  if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2) {
    return TensorError(name, "\"data_offsets\" is not a list of two integers");
  }
  const std::optional<int64_t> begin = NonNegativeInt((*offsets)[0]);
  const std::optional<int64_t> end = NonNegativeInt((*offsets)[1]);
  if (!begin.has_value() || !end.has_value() || *begin > *end || *end > data_size) {
    return TensorError(
        name, absl::StrCat("data_offsets outside the data section of ", data_size, " bytes"));
  }
  info.data_begin = *begin;
  info.data_end = *end;
  int64_t size_bytes = DTypeSize(info.dtype);
  for (const int64_t dim : info.shape) {
    if (__builtin_mul_overflow(size_bytes, dim, &size_bytes)) {
      return TensorError(name, "shape overflows int64");
    }
  }
  if (size_bytes != info.size_bytes()) {
    return TensorError(name, absl::StrCat("shape and dtype need ", size_bytes,
                                          " bytes, data_offsets give ", info.size_bytes()));
  }
  return info;
}

// Tensors may leave gaps (we accept files the reference writer would not produce) but two
// tensors sharing bytes would alias writes and hints at a crafted file.
absl::Status CheckNoOverlap(const std::vector<TensorInfo>& tensors) {
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& t : tensors) {
    if (t.size_bytes() > 0) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->data_begin < b->data_begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i]->data_begin < by_offset[i - 1]->data_end) {
      return TensorError(by_offset[i]->name,
                         absl::StrCat("overlaps tensor \"", by_offset[i - 1]->name, "\""));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseMetadata(const Json& value, std::map<std::string, std::string>& metadata) {
  if (!value.is_object()) return absl::InvalidArgumentError("safetensors: bad __metadata__");
  for (auto it = value.begin(); it != value.end(); ++it) {
    if (!it->is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: __metadata__ value of \"", it.key(), "\" is not a string"));
    }
    metadata[it.key()] = it->get<std::string>();
  }
  return absl::OkStatus();
}

}  // namespace

int64_t TensorInfo::num_elements() const {
  int64_t n = 1;
  for (const int64_t dim : shape) n *= dim;
  return n;
}

absl::StatusOr<SafetensorsHeader> ParseSafetensors(absl::Span<const uint8_t> bytes) {
  if (bytes.size() < 8) {
    return absl::InvalidArgumentError("safetensors: file shorter than its 8-byte header length");
  }
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | bytes[i];
  if (header_bytes > bytes.size() - 8 || header_bytes > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors: header length ", header_bytes,
                                                   " exceeds the file (", bytes.size(),
                                                   " bytes) or the 100 MB limit"));
  }
  const char* text = reinterpret_cast<const char*>(bytes.data() + 8);
  const Json header = Json::parse(text, text + header_bytes, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return absl::InvalidArgumentError("safetensors: header is not a JSON object");
  }
  SafetensorsHeader result;
  result.data_section_offset = static_cast<int64_t>(8 + header_bytes);
  const int64_t data_size = static_cast<int64_t>(bytes.size()) - result.data_section_offset;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      PAGODA_RETURN_IF_ERROR(ParseMetadata(*it, result.metadata));
      continue;
    }
    PAGODA_ASSIGN_OR_RETURN(TensorInfo info, ParseTensorEntry(it.key(), *it, data_size));
    info.data = bytes.data() + result.data_section_offset + info.data_begin;
    result.tensors.push_back(std::move(info));
  }
  PAGODA_RETURN_IF_ERROR(CheckNoOverlap(result.tensors));
  std::sort(result.tensors.begin(), result.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  return result;
}

// ---- MappedFile ----

absl::StatusOr<MappedFile> MappedFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    const std::string message = absl::StrCat("cannot open ", path, ": ", std::strerror(error));
    return error == ENOENT ? absl::NotFoundError(message) : absl::UnavailableError(message);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a regular file"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return MappedFile();
  }
  void* data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int error = errno;
  ::close(fd);  // the mapping keeps the file open
  if (data == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot mmap ", path, ": ", std::strerror(error)));
  }
  return MappedFile(static_cast<const uint8_t*>(data), size);
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

// ---- SafetensorsFile ----

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  PAGODA_ASSIGN_OR_RETURN(MappedFile file, MappedFile::Open(path));
  absl::StatusOr<SafetensorsHeader> header = ParseSafetensors(file.bytes());
  if (!header.ok()) {
    return absl::Status(header.status().code(),
                        absl::StrCat(path, ": ", header.status().message()));
  }
  // The header's pointers point into the mapping, which moves with `file` (no remap).
  return std::unique_ptr<SafetensorsFile>(
      new SafetensorsFile(path, std::move(file), *std::move(header)));
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  const auto it = std::lower_bound(
      header_.tensors.begin(), header_.tensors.end(), name,
      [](const TensorInfo& t, std::string_view n) { return std::string_view(t.name) < n; });
  if (it == header_.tensors.end() || it->name != name) return nullptr;
  return &*it;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> names;
  for (const TensorInfo& t : header_.tensors) names.push_back(t.name);
  return names;
}

// ---- SafetensorsCheckpoint ----

namespace {

// Shard names come from a file we do not trust: keep them inside the model directory.
bool IsPlainFileName(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos;
}

// The weight_map of model.safetensors.index.json: tensor name -> shard file name.
absl::StatusOr<std::map<std::string, std::string>> ParseWeightMap(const std::string& text) {
  const Json index = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object()) {
    return absl::InvalidArgumentError("model.safetensors.index.json: not a JSON object");
  }
  const auto weight_map = index.find("weight_map");
  if (weight_map == index.end() || !weight_map->is_object()) {
    return absl::InvalidArgumentError("model.safetensors.index.json: no \"weight_map\" object");
  }
  std::map<std::string, std::string> result;
  for (auto it = weight_map->begin(); it != weight_map->end(); ++it) {
    if (!it->is_string() || !IsPlainFileName(it->get_ref<const std::string&>())) {
      return absl::InvalidArgumentError(absl::StrCat("model.safetensors.index.json: weight_map[\"",
                                                     it.key(), "\"] is not a file name"));
    }
    result[it.key()] = it->get<std::string>();
  }
  return result;
}

}  // namespace

absl::Status SafetensorsCheckpoint::AddFile(std::unique_ptr<SafetensorsFile> file) {
  for (const std::string& name : file->names()) {
    const TensorInfo* info = file->Find(name);
    if (!index_.emplace(name, info).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor \"", name, "\" appears in two files"));
    }
  }
  files_.push_back(std::move(file));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Open(
    const std::string& model_dir) {
  std::unique_ptr<SafetensorsCheckpoint> checkpoint(new SafetensorsCheckpoint());
  absl::StatusOr<std::string> index_text;
  {
    std::ifstream in(model_dir + "/model.safetensors.index.json", std::ios::binary);
    if (!in) {
      PAGODA_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(model_dir + "/model.safetensors"));
      PAGODA_RETURN_IF_ERROR(checkpoint->AddFile(std::move(file)));
      return checkpoint;
    }
    index_text = std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  PAGODA_ASSIGN_OR_RETURN(const auto weight_map, ParseWeightMap(*index_text));
  std::set<std::string> shards;
  for (const auto& [name, shard] : weight_map) shards.insert(shard);
  for (const std::string& shard : shards) {
    PAGODA_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(model_dir + "/" + shard));
    PAGODA_RETURN_IF_ERROR(checkpoint->AddFile(std::move(file)));
  }
  // The index must tell the truth: a tensor it places in a shard is in that shard.
  for (const auto& [name, shard] : weight_map) {
    const std::string shard_path = model_dir + "/" + shard;
    const TensorInfo* info = checkpoint->Find(name);
    bool in_shard = false;
    for (const auto& file : checkpoint->files_) {
      in_shard |= info != nullptr && file->path() == shard_path && file->Find(name) == info;
    }
    if (!in_shard) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.safetensors.index.json: tensor \"", name, "\" is not in ", shard));
    }
  }
  return checkpoint;
}

bool SafetensorsFile::Maps(const void* data, int64_t size) const {
  const absl::Span<const uint8_t> bytes = file_.bytes();
  const auto begin = reinterpret_cast<uintptr_t>(data);
  const auto first = reinterpret_cast<uintptr_t>(bytes.data());
  return size >= 0 && begin >= first && begin - first <= bytes.size() &&
         static_cast<uint64_t>(size) <= bytes.size() - (begin - first);
}

bool SafetensorsCheckpoint::Maps(const void* data, int64_t size) const {
  for (const std::unique_ptr<SafetensorsFile>& file : files_) {
    if (file->Maps(data, size)) return true;
  }
  return false;
}

const TensorInfo* SafetensorsCheckpoint::Find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> names;
  for (const auto& [name, info] : index_) names.push_back(name);
  return names;
}

// ---- SafetensorsWriter ----

absl::Status SafetensorsWriter::Add(std::string name, DType dtype, std::vector<int64_t> shape,
                                    absl::Span<const uint8_t> bytes) {
  if (name == "__metadata__" || tensors_.count(name) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("SafetensorsWriter: bad or repeated name \"", name, "\""));
  }
  int64_t size_bytes = DTypeSize(dtype);
  for (const int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(size_bytes, dim, &size_bytes)) {
      return absl::InvalidArgumentError(absl::StrCat("SafetensorsWriter: bad shape of ", name));
    }
  }
  if (size_bytes != static_cast<int64_t>(bytes.size())) {
    return absl::InvalidArgumentError(absl::StrCat("SafetensorsWriter: ", name, " needs ",
                                                   size_bytes, " bytes, got ", bytes.size()));
  }
  tensors_[std::move(name)] =
      Entry{dtype, std::move(shape), std::string(bytes.begin(), bytes.end())};
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::AddFloats(std::string name, DType dtype, std::vector<int64_t> shape,
                                          absl::Span<const float> values) {
  std::vector<uint8_t> bytes(values.size() * static_cast<size_t>(DTypeSize(dtype)));
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(&bytes[4 * i], &values[i], 4);
    } else {
      const uint16_t half = dtype == DType::kBF16 ? F32ToBf16(values[i]) : F32ToF16(values[i]);
      std::memcpy(&bytes[2 * i], &half, 2);
    }
  }
  return Add(std::move(name), dtype, std::move(shape), bytes);
}

std::string SafetensorsWriter::Serialize() const {
  Json header = Json::object();
  header["__metadata__"] = Json::object({{"format", "pt"}});
  int64_t offset = 0;
  for (const auto& [name, entry] : tensors_) {
    const int64_t end = offset + static_cast<int64_t>(entry.bytes.size());
    header[name] = Json::object({{"dtype", std::string(DTypeName(entry.dtype))},
                                 {"shape", entry.shape},
                                 {"data_offsets", Json::array({offset, end})}});
    offset = end;
  }
  // Replace, not throw, should a caller pass a name that is not UTF-8.
  std::string text = header.dump(-1, ' ', false, Json::error_handler_t::replace);
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');
  std::string out;
  uint64_t length = text.size();
  for (int i = 0; i < 8; ++i, length >>= 8) out.push_back(static_cast<char>(length & 0xff));
  out += text;
  for (const auto& [name, entry] : tensors_) out += entry.bytes;
  return out;
}

absl::Status SafetensorsWriter::WriteFile(const std::string& path) const {
  const std::string bytes = Serialize();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace pagoda::model
