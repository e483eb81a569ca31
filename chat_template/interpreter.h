#pragma once

// Renders a parsed template: Jinja2's scoping (a for loop's body gets a fresh scope on every
// iteration; if does not make one; macros see their arguments and the template's top level),
// Undefined's defaults, and the sandbox's bounds on work, output and call depth.
//
// Thread rule: one Interpreter per render, on one thread. The Body it reads may be shared.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "chat_template/ast.h"
#include "chat_template/value.h"

namespace pagoda::chat_template {

struct RenderLimits {
  // The rendered prompt, including what macros and block sets build on the way.
  size_t max_output_bytes = size_t{8} << 20;
  // Loop iterations, calls and items built by filters, together: about 0.3 s of work on one
  // core; a real template spends tens of steps per message.
  int64_t max_steps = 1'000'000;
  // Macro calls nested in macro calls.
  int max_call_depth = 64;
};

// Lists and dicts nested deeper than this are refused where they are built.
inline constexpr int kMaxValueDepth = 128;

// A raise_exception() status carries this payload (its message is the template's own text).
inline constexpr absl::string_view kRaisedPayload = "pagoda.chat_template.raised";

class Interpreter {
 public:
  Interpreter(const RenderLimits& limits, absl::Time now) : limits_(limits), now_(now) {}

  // Renders `body` with `variables` as the template's context.
  absl::StatusOr<std::string> Render(const Body& body, const Dict& variables);

  // For the built-ins: counts `steps` of work, failing once the limit is passed.
  absl::Status Charge(int64_t steps);
  absl::Time now() const { return now_; }
  const RenderLimits& limits() const { return limits_; }
  // Calls a callable value (macro, global, bound method) with `args`.
  absl::StatusOr<Value> CallValue(const Value& callee, CallArgs args);
  // Runs the filter or test named `name` (for map, select, selectattr and friends).
  absl::StatusOr<Value> ApplyFilter(absl::string_view name, const Value& operand, CallArgs args);
  absl::StatusOr<bool> ApplyTest(absl::string_view name, const Value& operand, CallArgs args);

  // A macro's call: binds the arguments and renders its body in a new scope.
  absl::StatusOr<Value> CallMacro(const Stmt& macro, CallArgs args);

 private:
  // A scope's variables: few, so a scan beats hashing (a loop makes a scope per iteration).
  class Vars {
   public:
    Value& operator[](const std::string& name) {
      for (auto& [key, value] : entries_) {
        if (key == name) return value;
      }
      return entries_.emplace_back(name, Value()).second;
    }
    const Value* Find(const std::string& name) const {
      for (const auto& [key, value] : entries_) {
        if (key == name) return &value;
      }
      return nullptr;
    }
    bool contains(const std::string& name) const { return Find(name) != nullptr; }

   private:
    std::vector<std::pair<std::string, Value>> entries_;
  };
  struct Frame {
    Vars vars;
    Frame* parent = nullptr;
  };
  enum class Flow { kNormal, kBreak, kContinue };

  Value Lookup(const Frame& frame, const std::string& name) const;
  absl::Status Exec(const Body& body, Frame& frame, Flow& flow);
  absl::Status ExecStmt(const Stmt& stmt, Frame& frame, Flow& flow);
  absl::Status ExecFor(const Stmt& stmt, Frame& frame, Flow& flow);
  absl::Status OutputSum(const Expr& sum, Frame& frame);
  absl::Status ExecSet(const Stmt& stmt, Frame& frame, Flow& flow);
  absl::Status Bind(const std::vector<std::string>& targets, const Value& value, Frame& frame,
                    Position position);
  absl::Status Append(absl::string_view text);
  // Renders `body` into a string of its own (block set, macro).
  absl::StatusOr<std::string> Capture(const Body& body, Frame& frame, Flow* flow = nullptr);
  // Applies a block set's filter chain (filters over a placeholder) to `operand`.
  absl::StatusOr<Value> ApplyFilterChain(const Expr& chain, Value operand, Frame& frame);

  // Eval bounds what EvalUnbounded computes (weight and depth).
  absl::StatusOr<Value> Eval(const Expr& expr, Frame& frame);
  absl::StatusOr<Value> EvalUnbounded(const Expr& expr, Frame& frame);
  absl::StatusOr<Value> EvalCall(const Expr& expr, Frame& frame);
  absl::StatusOr<Value> EvalCompare(const Expr& expr, Frame& frame);
  absl::StatusOr<Value> EvalLiteralContainer(const Expr& expr, Frame& frame);
  absl::StatusOr<CallArgs> EvalArgs(const Expr& expr, size_t first, Frame& frame);

  const RenderLimits limits_;
  const absl::Time now_;
  int64_t steps_ = 0;
  size_t output_bytes_ = 0;
  int call_depth_ = 0;
  std::string* out_ = nullptr;
  Frame* root_ = nullptr;
};

}  // namespace pagoda::chat_template
