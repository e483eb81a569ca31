#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace pagoda::tokenizer {

struct Regex::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Impl() { pcre2_code_free(code); }
};

Regex::Regex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Regex::~Regex() = default;

absl::StatusOr<std::unique_ptr<Regex>> Regex::Create(std::string_view pattern) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  // UCP makes \s, \w, \d and case folding Unicode-aware, as they are in Oniguruma.
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &error_code,
                                   &error_offset, nullptr);
  if (code == nullptr) {
    // The pattern itself may be invalid UTF-8; PCRE2 then reports it as a compile error.
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    return absl::InvalidArgumentError(absl::StrCat("cannot compile regex at offset ", error_offset,
                                                   ": ", reinterpret_cast<const char*>(message)));
  }
  auto impl = std::make_unique<Impl>();
  impl->code = code;
  impl->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return std::unique_ptr<Regex>(new Regex(std::move(impl)));
}

namespace {

// A JIT stack (and the match context that hands it over) for the rare match that overflows
// PCRE2's default 32 KiB one, e.g. lookahead over a very long whitespace run.
struct LargeStack {
  pcre2_jit_stack* stack = pcre2_jit_stack_create(64 * 1024, 256 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  LargeStack() { pcre2_jit_stack_assign(context, nullptr, stack); }
  ~LargeStack() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
  }
};

}  // namespace

void Regex::FindAll(std::string_view text, std::vector<Span>& matches) const {
  pcre2_match_data* data = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  std::unique_ptr<LargeStack> large;
  auto match = [&](size_t start) {
    if (!impl_->jit) {
      return pcre2_match(impl_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, data,
                         large == nullptr ? nullptr : large->context);
    }
    return pcre2_jit_match(impl_->code, subject, text.size(), start, 0, data,
                           large == nullptr ? nullptr : large->context);
  };
  size_t start = 0;
  while (start <= text.size()) {
    int rc = match(start);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && large == nullptr) {
      large = std::make_unique<LargeStack>();
      rc = match(start);
    }
    // No match, or a resource limit even with the large stack: the rest is unmatched.
    if (rc < 0) break;
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
    const size_t begin = ovector[0];
    const size_t end = ovector[1];
    if (end > begin) {
      matches.emplace_back(begin, end);
      start = end;
      continue;
    }
    // Empty match: step over one whole character so the next search starts on a boundary.
    if (begin >= text.size()) break;
    size_t next = begin + 1;
    while (next < text.size() && (static_cast<unsigned char>(text[next]) & 0xC0) == 0x80) ++next;
    start = next;
  }
  pcre2_match_data_free(data);
}

}  // namespace pagoda::tokenizer
