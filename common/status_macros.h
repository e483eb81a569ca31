#pragma once

// Debian's Abseil (20220623) has no RETURN_IF_ERROR / ASSIGN_OR_RETURN; these are ours.

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns `expr` from the enclosing function when it is not OK. `expr` is an absl::Status.
#define PAGODA_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status pagoda_status_ = (expr);          \
    if (!pagoda_status_.ok()) return pagoda_status_; \
  } while (false)

#define PAGODA_STATUS_CONCAT_INNER_(a, b) a##b
#define PAGODA_STATUS_CONCAT_(a, b) PAGODA_STATUS_CONCAT_INNER_(a, b)

// `lhs = value of expr`, or returns its status from the enclosing function. `expr` is an
// absl::StatusOr<T>; `lhs` may declare a variable: PAGODA_ASSIGN_OR_RETURN(auto x, MakeX());
#define PAGODA_ASSIGN_OR_RETURN(lhs, expr) \
  PAGODA_ASSIGN_OR_RETURN_IMPL_(PAGODA_STATUS_CONCAT_(pagoda_statusor_, __LINE__), lhs, expr)

#define PAGODA_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()
