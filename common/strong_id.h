#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <ostream>

namespace pagoda::common {

// A typed integer identifier: BlockId and RequestId cannot be mixed up or used in arithmetic.
// `Tag` is an empty struct naming the kind of id; `T` is the integer that holds it.
// Trivially copyable; hashable by absl and std containers.
template <typename Tag, typename T>
class StrongId {
 public:
  using ValueType = T;

  constexpr StrongId() = default;
  constexpr explicit StrongId(T value) : value_(value) {}

  constexpr T value() const { return value_; }

  friend constexpr auto operator<=>(StrongId, StrongId) = default;

  template <typename H>
  friend H AbslHashValue(H h, StrongId id) {
    return H::combine(std::move(h), id.value_);
  }

  friend std::ostream& operator<<(std::ostream& os, StrongId id) { return os << id.value_; }

 private:
  T value_{};
};

}  // namespace pagoda::common

template <typename Tag, typename T>
struct std::hash<pagoda::common::StrongId<Tag, T>> {
  size_t operator()(pagoda::common::StrongId<Tag, T> id) const noexcept {
    return std::hash<T>{}(id.value());
  }
};
