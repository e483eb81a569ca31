#include "model/safetensors.h"

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pagoda::model {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::Span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A file from a hand-written header and `data_size` bytes of data section.
std::string MakeFile(const std::string& header, size_t data_size) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i, n >>= 8) out[i] = static_cast<char>(n & 0xff);
  return out + header + std::string(data_size, '\x01');
}

void ExpectParseError(const std::string& file, const std::string& substring) {
  const absl::StatusOr<SafetensorsHeader> header = ParseSafetensors(AsBytes(file));
  ASSERT_FALSE(header.ok()) << substring;
  EXPECT_EQ(header.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(header.status().message()), HasSubstr(substring));
}

TEST(SafetensorsTest, WriterOutputParses) {
  SafetensorsWriter writer;
  const std::vector<float> a = {1.0f, -2.0f, 3.5f, 0.25f, 5.0f, 6.0f};
  ASSERT_TRUE(writer.AddFloats("b.weight", DType::kF32, {2, 3}, a).ok());
  ASSERT_TRUE(writer.AddFloats("a.bias", DType::kBF16, {3}, {{1.0f, 2.0f, -3.0f}}).ok());
  ASSERT_TRUE(writer.AddFloats("c.half", DType::kF16, {1, 1}, std::vector<float>{0.5f}).ok());
  ASSERT_TRUE(writer.AddFloats("empty", DType::kF32, {0, 4}, {}).ok());
  const std::string file = writer.Serialize();

  const absl::StatusOr<SafetensorsHeader> header = ParseSafetensors(AsBytes(file));
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->data_section_offset % 8, 0);
  EXPECT_EQ(header->metadata.at("format"), "pt");
  ASSERT_EQ(header->tensors.size(), 4u);
  const TensorInfo& bias = header->tensors[0];
  EXPECT_EQ(bias.name, "a.bias");
  EXPECT_EQ(bias.dtype, DType::kBF16);
  EXPECT_THAT(bias.shape, ElementsAre(3));
  EXPECT_EQ(bias.data_begin, 0);  // name order, contiguous
  uint16_t raw;
  std::memcpy(&raw, bias.data + 4, 2);
  EXPECT_EQ(Bf16ToF32(raw), -3.0f);
  const TensorInfo& weight = header->tensors[1];
  EXPECT_EQ(weight.data_begin, 6);
  EXPECT_EQ(weight.num_elements(), 6);
  EXPECT_EQ(std::memcmp(weight.data, a.data(), 24), 0);
  EXPECT_EQ(header->tensors[3].size_bytes(), 0);
}

TEST(SafetensorsTest, WriterRejectsBadInput) {
  SafetensorsWriter writer;
  EXPECT_FALSE(writer.AddFloats("x", DType::kF32, {2, 2}, std::vector<float>{1.0f}).ok());
  EXPECT_TRUE(writer.AddFloats("x", DType::kF32, {1}, std::vector<float>{1.0f}).ok());
  EXPECT_FALSE(writer.AddFloats("x", DType::kF32, {1}, std::vector<float>{1.0f}).ok());
  EXPECT_FALSE(writer.AddFloats("y", DType::kF32, {-1}, {}).ok());
  EXPECT_FALSE(writer.AddFloats("__metadata__", DType::kF32, {1}, std::vector<float>{1.0f}).ok());
}

TEST(SafetensorsTest, TruncatedAndOversizedHeaders) {
  ExpectParseError("", "shorter");
  ExpectParseError("1234567", "shorter");
  ExpectParseError(std::string("\xff\xff\xff\xff\xff\xff\xff\xff", 8) + "{}", "header length");
  std::string file =
      MakeFile(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 8);
  ExpectParseError(file.substr(0, 20), "header length");
  ExpectParseError(file.substr(0, file.size() - 1), "data_offsets");  // data section truncated
  ExpectParseError(MakeFile("{\"t\": ", 0), "JSON");
  ExpectParseError(MakeFile("[1,2]", 0), "JSON object");
}

TEST(SafetensorsTest, BadEntriesNameTheTensor) {
  ExpectParseError(MakeFile(R"({"w": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}})", 8),
                   "tensor \"w\": unsupported dtype \"I64\"");
  ExpectParseError(MakeFile(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8),
                   "\"w\": shape and dtype need 12 bytes");
  ExpectParseError(MakeFile(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", 8),
                   "\"w\": data_offsets");
  ExpectParseError(MakeFile(R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8),
                   "\"w\": shape");
  ExpectParseError(MakeFile(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", 8),
                   "\"w\": \"data_offsets\"");
  ExpectParseError(MakeFile(R"({"w": {"dtype": 7, "shape": [2], "data_offsets": [0, 8]}})", 8),
                   "\"w\": \"dtype\"");
  ExpectParseError(MakeFile(R"({"w": [1]})", 8), "\"w\": entry");
  ExpectParseError(MakeFile(R"({"__metadata__": {"format": 1}})", 0), "__metadata__");
  // Dimensions whose product overflows int64 must not wrap around to a matching size.
  ExpectParseError(MakeFile(R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 4],
                         "data_offsets": [0, 0]}})",
                            0),
                   "overflows");
  ExpectParseError(MakeFile(R"({"w": {"dtype": "F32", "shape": [1],
                                      "data_offsets": [0, 18446744073709551615]}})",
                            8),
                   "data_offsets");
}

TEST(SafetensorsTest, OverlappingTensorsAreAnError) {
  ExpectParseError(MakeFile(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                   "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                            12),
                   "overlaps");
  // Gaps are tolerated; so are zero-size tensors anywhere.
  const std::string ok = MakeFile(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                   "z": {"dtype": "F32", "shape": [0], "data_offsets": [2, 2]},
                   "b": {"dtype": "F16", "shape": [2], "data_offsets": [8, 12]}})",
                                  12);
  EXPECT_TRUE(ParseSafetensors(AsBytes(ok)).ok());
}

class SafetensorsFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("safetensors_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
};

TEST_F(SafetensorsFileTest, OpenMapsAndFinds) {
  SafetensorsWriter writer;
  ASSERT_TRUE(writer.AddFloats("w", DType::kF32, {2}, {{1.5f, -1.0f}}).ok());
  const std::string path = dir_ / "x.safetensors";
  ASSERT_TRUE(writer.WriteFile(path).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_THAT((*file)->names(), ElementsAre("w"));
  EXPECT_EQ((*file)->Find("missing"), nullptr);
  const TensorInfo* w = (*file)->Find("w");
  ASSERT_NE(w, nullptr);
  float values[2];
  std::memcpy(values, w->data, 8);
  EXPECT_EQ(values[0], 1.5f);
  EXPECT_EQ(values[1], -1.0f);
  // Maps: the tensor's bytes are inside the mapping; past its end, or elsewhere, are not.
  EXPECT_TRUE((*file)->Maps(w->data, 8));
  EXPECT_TRUE((*file)->Maps(w->data + 8, 0));
  EXPECT_FALSE((*file)->Maps(w->data, 9));
  EXPECT_FALSE((*file)->Maps(values, 8));
  EXPECT_FALSE((*file)->Maps(w->data, -1));
}

TEST_F(SafetensorsFileTest, OpenErrorsNameThePath) {
  EXPECT_EQ(SafetensorsFile::Open((dir_ / "none").string()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(SafetensorsFile::Open(dir_.string()).ok());  // a directory
  const std::string empty = dir_ / "empty.safetensors";
  { std::ofstream(empty, std::ios::binary); }
  const absl::Status status = SafetensorsFile::Open(empty).status();
  EXPECT_THAT(std::string(status.message()), HasSubstr("empty.safetensors"));
}

TEST(SafetensorsStoriesTest, Stories260K) {
  const std::string path = std::string(PAGODA_SHARED_MODELS_DIR) + "/stories260K/model.safetensors";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no " << path;
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->names().size(), 47u);
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  const TensorInfo* embed = (*file)->Find("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  EXPECT_THAT(embed->shape, ElementsAre(512, 64));
  EXPECT_EQ((*file)->Find("lm_head.weight"), nullptr);
  const TensorInfo* gate = (*file)->Find("model.layers.4.mlp.gate_proj.weight");
  ASSERT_NE(gate, nullptr);
  EXPECT_THAT(gate->shape, ElementsAre(172, 64));
}

}  // namespace
}  // namespace pagoda::model
