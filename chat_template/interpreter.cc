#include "chat_template/interpreter.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "chat_template/builtins.h"
#include "chat_template/operators.h"
#include "common/status_macros.h"

namespace pagoda::chat_template {
namespace {

// Runtime errors get the position of the expression or statement that failed, once; the
// message of raise_exception() is passed through as the template wrote it.
absl::Status Located(absl::Status status, Position position) {
  if (status.ok() || status.GetPayload(kRaisedPayload).has_value() ||
      absl::string_view(status.message()).substr(0, 19) == "chat template line ") {
    return status;
  }
  absl::Status located = ErrorAt(position, status.message());
  if (status.code() == absl::StatusCode::kResourceExhausted) {
    located = absl::ResourceExhaustedError(located.message());
  }
  return located;
}

// A macro defined by the template.
class Macro : public Callable {
 public:
  explicit Macro(const Stmt& stmt) : stmt_(stmt) {}
  absl::StatusOr<Value> Call(Interpreter& interpreter, CallArgs args) const override {
    return interpreter.CallMacro(stmt_, std::move(args));
  }
  std::string name() const override { return stmt_.name; }

 private:
  const Stmt& stmt_;
};

// loop.cycle(a, b, ...): the argument at the iteration's index, round-robin.
class LoopCycle : public Callable {
 public:
  explicit LoopCycle(size_t index0) : index0_(index0) {}
  absl::StatusOr<Value> Call(Interpreter&, CallArgs args) const override {
    if (args.positional.empty()) return absl::InvalidArgumentError("no items for cycling given");
    return args.positional[index0_ % args.positional.size()];
  }
  std::string name() const override { return "loop.cycle"; }

 private:
  size_t index0_;
};

Value LoopObject(const std::vector<Value>& items, size_t i, int depth) {
  const auto n = static_cast<int64_t>(items.size());
  const auto index = static_cast<int64_t>(i);
  // Built in one go (the keys are distinct): a loop makes one per iteration.
  std::vector<std::pair<std::string, Value>> loop;
  loop.reserve(12);
  loop.emplace_back("index", Value::Int(index + 1));
  loop.emplace_back("index0", Value::Int(index));
  loop.emplace_back("revindex", Value::Int(n - index));
  loop.emplace_back("revindex0", Value::Int(n - index - 1));
  loop.emplace_back("first", Value::Bool(i == 0));
  loop.emplace_back("last", Value::Bool(index == n - 1));
  loop.emplace_back("length", Value::Int(n));
  loop.emplace_back("depth", Value::Int(depth));
  loop.emplace_back("depth0", Value::Int(depth - 1));
  loop.emplace_back("previtem",
                    i > 0 ? items[i - 1] : Value::Undefined("there is no previous item"));
  loop.emplace_back("nextitem",
                    index + 1 < n ? items[i + 1] : Value::Undefined("there is no next item"));
  loop.emplace_back("cycle", Value::Function(std::make_shared<LoopCycle>(i)));
  return Value::MakeDict(Dict::FromDistinct(std::move(loop)));
}

}  // namespace

absl::StatusOr<std::string> Interpreter::Render(const Body& body, const Dict& variables) {
  Frame root;
  for (const auto& [name, value] : variables.entries()) root.vars[name] = value;
  root_ = &root;
  std::string out;
  out_ = &out;
  Flow flow = Flow::kNormal;
  PAGODA_RETURN_IF_ERROR(Exec(body, root, flow));
  root_ = nullptr;
  out_ = nullptr;
  return out;
}

absl::Status Interpreter::Charge(int64_t steps) {
  steps_ += steps;
  if (steps_ > limits_.max_steps) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the chat template ran more than ", limits_.max_steps, " steps"));
  }
  return absl::OkStatus();
}

absl::Status Interpreter::Append(absl::string_view text) {
  output_bytes_ += text.size();
  if (output_bytes_ > limits_.max_output_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the chat template's output passed ", limits_.max_output_bytes, " bytes"));
  }
  out_->append(text.data(), text.size());
  return absl::OkStatus();
}

Value Interpreter::Lookup(const Frame& frame, const std::string& name) const {
  for (const Frame* f = &frame; f != nullptr; f = f->parent) {
    if (const Value* value = f->vars.Find(name)) return *value;
  }
  Value global = GlobalFunction(name);
  if (!global.is_undefined()) return global;
  return Value::Undefined(absl::StrCat("'", name, "' is undefined"));
}

absl::Status Interpreter::Exec(const Body& body, Frame& frame, Flow& flow) {
  for (const auto& stmt : body) {
    PAGODA_RETURN_IF_ERROR(ExecStmt(*stmt, frame, flow));
    if (flow != Flow::kNormal) return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status Interpreter::ExecStmt(const Stmt& stmt, Frame& frame, Flow& flow) {
  switch (stmt.kind) {
    case StmtKind::kText:
      return Append(stmt.text);
    case StmtKind::kOutput: {
      if (stmt.expr->kind == ExprKind::kBinary && stmt.expr->op == BinaryOp::kAdd) {
        return Located(OutputSum(*stmt.expr, frame), stmt.position);
      }
      auto value = Eval(*stmt.expr, frame);
      if (!value.ok()) return Located(value.status(), stmt.position);
      if (value->is_string()) return Append(value->string_value());  // no copy
      return Append(value->Str());
    }
    case StmtKind::kIf:
      for (const auto& [condition, branch] : stmt.branches) {
        auto test = Eval(*condition, frame);
        if (!test.ok()) return Located(test.status(), stmt.position);
        if (test->Truthy()) return Exec(branch, frame, flow);
      }
      return Exec(stmt.else_body, frame, flow);
    case StmtKind::kFor:
      return ExecFor(stmt, frame, flow);
    case StmtKind::kSet:
    case StmtKind::kSetAttr:
    case StmtKind::kBlockSet:
      return Located(ExecSet(stmt, frame, flow), stmt.position);
    case StmtKind::kMacro:
      frame.vars[stmt.name] = Value::Function(std::make_shared<Macro>(stmt));
      return absl::OkStatus();
    case StmtKind::kBreak:
      flow = Flow::kBreak;
      return absl::OkStatus();
    case StmtKind::kContinue:
      flow = Flow::kContinue;
      return absl::OkStatus();
    case StmtKind::kGeneration: {
      Frame scope{{}, &frame};
      return Exec(stmt.body, scope, flow);
    }
  }
  return absl::OkStatus();
}

// {{ a + b + c }}: the operands are evaluated left to right as always; when they are all
// strings, each is appended to the output as it is, instead of building every partial sum
// (chat templates print long `'<|im_start|>' + role + '\n' + content + ...` chains).
absl::Status Interpreter::OutputSum(const Expr& sum, Frame& frame) {
  std::vector<const Expr*> operands;
  const Expr* node = &sum;
  while (node->kind == ExprKind::kBinary && node->op == BinaryOp::kAdd) {
    operands.push_back(node->children[1].get());
    node = node->children[0].get();
  }
  operands.push_back(node);
  std::vector<Value> values;
  values.reserve(operands.size());
  bool all_strings = true;
  for (auto it = operands.rbegin(); it != operands.rend(); ++it) {
    PAGODA_ASSIGN_OR_RETURN(Value value, Eval(**it, frame));
    all_strings = all_strings && value.is_string();
    values.push_back(std::move(value));
  }
  if (all_strings) {
    for (const Value& value : values) PAGODA_RETURN_IF_ERROR(Append(value.string_value()));
    return absl::OkStatus();
  }
  Value total = std::move(values[0]);
  for (size_t i = 1; i < values.size(); ++i) {
    PAGODA_ASSIGN_OR_RETURN(total, BinaryOperation(BinaryOp::kAdd, total, values[i]));
    if (total.weight() > limits_.max_output_bytes) {
      return absl::ResourceExhaustedError("a value passed the chat template's output bound");
    }
  }
  return Append(total.Str());
}

absl::Status Interpreter::ExecFor(const Stmt& stmt, Frame& frame, Flow& flow) {
  auto iterable = Eval(*stmt.expr, frame);
  if (!iterable.ok()) return Located(iterable.status(), stmt.position);
  // A list is iterated in place (the loop holds it); other iterables are materialized.
  const bool in_place = iterable->is_list() && stmt.condition == nullptr;
  absl::StatusOr<std::vector<Value>> all = in_place ? std::vector<Value>() : Iterate(*iterable);
  if (!all.ok()) return Located(all.status(), stmt.position);
  std::vector<Value> filtered;
  if (stmt.condition == nullptr) {
    filtered = std::move(*all);
  } else {
    for (Value& item : *all) {
      Frame scope{{}, &frame};
      PAGODA_RETURN_IF_ERROR(Located(Charge(1), stmt.position));
      PAGODA_RETURN_IF_ERROR(Bind(stmt.targets, item, scope, stmt.position));
      auto keep = Eval(*stmt.condition, scope);
      if (!keep.ok()) return Located(keep.status(), stmt.position);
      if (keep->Truthy()) filtered.push_back(std::move(item));
    }
  }
  const std::vector<Value>& items = in_place ? iterable->list() : filtered;
  if (items.empty()) {
    Frame scope{{}, &frame};
    return Exec(stmt.else_body, scope, flow);
  }
  // loop.depth counts recursive loops only, which are not supported: every loop is depth 1.
  const int depth = 1;
  for (size_t i = 0; i < items.size(); ++i) {
    PAGODA_RETURN_IF_ERROR(Located(Charge(1), stmt.position));
    Frame scope{{}, &frame};
    PAGODA_RETURN_IF_ERROR(Bind(stmt.targets, items[i], scope, stmt.position));
    scope.vars["loop"] = LoopObject(items, i, depth);
    Flow inner = Flow::kNormal;
    PAGODA_RETURN_IF_ERROR(Exec(stmt.body, scope, inner));
    if (inner == Flow::kBreak) break;
  }
  flow = Flow::kNormal;
  return absl::OkStatus();
}

absl::Status Interpreter::Bind(const std::vector<std::string>& targets, const Value& value,
                               Frame& frame, Position position) {
  if (targets.size() == 1) {
    frame.vars[targets[0]] = value;
    return absl::OkStatus();
  }
  auto items = Iterate(value);
  if (!items.ok()) return Located(items.status(), position);
  if (items->size() != targets.size()) {
    return ErrorAt(
        position,
        absl::StrCat(items->size() < targets.size() ? "not enough" : "too many",
                     " values to unpack (expected ", targets.size(), ", got ", items->size(), ")"));
  }
  for (size_t i = 0; i < targets.size(); ++i) frame.vars[targets[i]] = (*items)[i];
  return absl::OkStatus();
}

absl::StatusOr<std::string> Interpreter::Capture(const Body& body, Frame& frame, Flow* flow_out) {
  std::string captured;
  std::string* const saved = out_;
  out_ = &captured;
  Flow flow = Flow::kNormal;
  const absl::Status status = Exec(body, frame, flow);
  if (flow_out != nullptr) *flow_out = flow;
  out_ = saved;
  if (!status.ok()) return status;
  return captured;
}

absl::Status Interpreter::ExecSet(const Stmt& stmt, Frame& frame, Flow& flow) {
  if (stmt.kind == StmtKind::kBlockSet) {
    // A break or continue inside the block ends it and reaches the enclosing loop.
    PAGODA_ASSIGN_OR_RETURN(std::string text, Capture(stmt.body, frame, &flow));
    Value value = Value::String(std::move(text));
    if (stmt.expr != nullptr) {
      // {% set x | f | g(args) %}: stmt.expr is the filter chain over a placeholder literal.
      PAGODA_ASSIGN_OR_RETURN(value, ApplyFilterChain(*stmt.expr, std::move(value), frame));
    }
    frame.vars[stmt.targets[0]] = std::move(value);
    return absl::OkStatus();
  }
  PAGODA_ASSIGN_OR_RETURN(Value value, Eval(*stmt.expr, frame));
  if (stmt.kind == StmtKind::kSet) return Bind(stmt.targets, value, frame, stmt.position);
  const Value target = Lookup(frame, stmt.targets[0]);
  if (target.kind() != Value::Kind::kNamespace) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot assign attribute on non-namespace object '", stmt.targets[0], "'"));
  }
  if (value.has_namespace()) {
    // Jinja2 allows it; refusing it keeps values free of cycles (and so of leaks and endless
    // printing).
    return absl::InvalidArgumentError("a namespace may not be stored inside a namespace");
  }
  target.namespace_dict().Set(stmt.attribute, std::move(value));
  return absl::OkStatus();
}

absl::StatusOr<Value> Interpreter::ApplyFilterChain(const Expr& chain, Value operand,
                                                    Frame& frame) {
  if (chain.kind != ExprKind::kFilter) return operand;
  PAGODA_ASSIGN_OR_RETURN(Value inner,
                          ApplyFilterChain(*chain.children[0], std::move(operand), frame));
  PAGODA_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(chain, 1, frame));
  return chain.filter->apply(*this, inner, args);
}

absl::StatusOr<Value> Interpreter::CallMacro(const Stmt& macro, CallArgs args) {
  if (call_depth_ >= limits_.max_call_depth) {
    return absl::ResourceExhaustedError(
        absl::StrCat("macro calls nested deeper than ", limits_.max_call_depth));
  }
  PAGODA_RETURN_IF_ERROR(Charge(1));
  if (args.positional.size() > macro.params.size()) {
    return absl::InvalidArgumentError(absl::StrCat("macro '", macro.name, "' takes not more than ",
                                                   macro.params.size(), " argument(s)"));
  }
  Frame scope{{}, root_};
  for (size_t i = 0; i < args.positional.size(); ++i) {
    scope.vars[macro.params[i]] = std::move(args.positional[i]);
  }
  for (auto& [name, value] : args.keyword) {
    bool known = false;
    for (const std::string& param : macro.params) known = known || param == name;
    if (!known) {
      return absl::InvalidArgumentError(
          absl::StrCat("macro '", macro.name, "' has no parameter named '", name, "'"));
    }
    scope.vars[name] = std::move(value);
  }
  for (size_t i = 0; i < macro.params.size(); ++i) {
    if (scope.vars.contains(macro.params[i])) continue;
    if (macro.defaults[i] == nullptr) {
      scope.vars[macro.params[i]] =
          Value::Undefined(absl::StrCat("parameter '", macro.params[i], "' was not provided"));
      continue;
    }
    PAGODA_ASSIGN_OR_RETURN(scope.vars[macro.params[i]], Eval(*macro.defaults[i], scope));
  }
  ++call_depth_;
  auto text = Capture(macro.body, scope);
  --call_depth_;
  if (!text.ok()) return text.status();
  return Value::String(std::move(*text));
}

absl::StatusOr<Value> Interpreter::CallValue(const Value& callee, CallArgs args) {
  if (callee.is_undefined()) return UndefinedError(callee);
  if (callee.kind() != Value::Kind::kCallable) {
    return absl::InvalidArgumentError(
        absl::StrCat("TypeError: '", callee.TypeName(), "' object is not callable"));
  }
  return callee.callable().Call(*this, std::move(args));
}

absl::StatusOr<Value> Interpreter::ApplyFilter(absl::string_view name, const Value& operand,
                                               CallArgs args) {
  const Filter* filter = FindFilter(name);
  if (filter == nullptr)
    return absl::InvalidArgumentError(absl::StrCat("no filter named '", name, "'"));
  return filter->apply(*this, operand, args);
}

absl::StatusOr<bool> Interpreter::ApplyTest(absl::string_view name, const Value& operand,
                                            CallArgs args) {
  const Test* test = FindTest(name);
  if (test == nullptr)
    return absl::InvalidArgumentError(absl::StrCat("no test named '", name, "'"));
  return test->check(*this, operand, args);
}

absl::StatusOr<CallArgs> Interpreter::EvalArgs(const Expr& expr, size_t first, Frame& frame) {
  CallArgs args;
  for (size_t i = first; i < expr.children.size(); ++i) {
    PAGODA_ASSIGN_OR_RETURN(Value value, Eval(*expr.children[i], frame));
    args.positional.push_back(std::move(value));
  }
  for (const auto& [name, value_expr] : expr.kwargs) {
    PAGODA_ASSIGN_OR_RETURN(Value value, Eval(*value_expr, frame));
    args.keyword.emplace_back(name, std::move(value));
  }
  return args;
}

absl::StatusOr<Value> Interpreter::EvalCall(const Expr& expr, Frame& frame) {
  const Expr& callee = *expr.children[0];
  PAGODA_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1, frame));
  if (callee.kind == ExprKind::kAttr) {
    PAGODA_ASSIGN_OR_RETURN(Value object, Eval(*callee.children[0], frame));
    if (object.is_undefined()) return UndefinedError(object);
    if (HasMethod(object, callee.name)) {
      PAGODA_RETURN_IF_ERROR(Charge(1));
      return CallMethod(*this, object, callee.name, std::move(args));
    }
    PAGODA_ASSIGN_OR_RETURN(Value function, GetAttr(object, callee.name));
    return CallValue(function, std::move(args));
  }
  PAGODA_ASSIGN_OR_RETURN(Value function, Eval(callee, frame));
  return CallValue(function, std::move(args));
}

absl::StatusOr<Value> Interpreter::EvalCompare(const Expr& expr, Frame& frame) {
  PAGODA_ASSIGN_OR_RETURN(Value left, Eval(*expr.children[0], frame));
  for (size_t i = 0; i < expr.ops.size(); ++i) {
    PAGODA_ASSIGN_OR_RETURN(Value right, Eval(*expr.children[i + 1], frame));
    PAGODA_ASSIGN_OR_RETURN(bool holds, Compare(expr.ops[i], left, right));
    if (!holds) return Value::Bool(false);
    left = std::move(right);
  }
  return Value::Bool(true);
}

absl::StatusOr<Value> Interpreter::EvalLiteralContainer(const Expr& expr, Frame& frame) {
  PAGODA_RETURN_IF_ERROR(Charge(static_cast<int64_t>(expr.children.size())));
  if (expr.kind == ExprKind::kDict) {
    Dict dict;
    for (size_t i = 0; i + 1 < expr.children.size(); i += 2) {
      PAGODA_ASSIGN_OR_RETURN(Value key, Eval(*expr.children[i], frame));
      if (!key.is_string()) {
        return absl::InvalidArgumentError("dict literal keys must be strings");
      }
      PAGODA_ASSIGN_OR_RETURN(Value value, Eval(*expr.children[i + 1], frame));
      dict.Set(key.string_value(), std::move(value));
    }
    return Value::MakeDict(std::move(dict));
  }
  std::vector<Value> items;
  for (const auto& child : expr.children) {
    PAGODA_ASSIGN_OR_RETURN(Value value, Eval(*child, frame));
    items.push_back(std::move(value));
  }
  return expr.kind == ExprKind::kTuple ? Value::Tuple(std::move(items))
                                       : Value::List(std::move(items));
}

absl::StatusOr<Value> Interpreter::Eval(const Expr& expr, Frame& frame) {
  absl::StatusOr<Value> value = EvalUnbounded(expr, frame);
  if (!value.ok()) return value;
  // Every value a template builds is bounded where it is built: what it could print as, and
  // how deep it nests.
  if (value->weight() > limits_.max_output_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("a value passed the chat template's bound of ",
                                                     limits_.max_output_bytes, " bytes"));
  }
  if (value->depth() > kMaxValueDepth) {
    return absl::ResourceExhaustedError(
        absl::StrCat("a value nests deeper than ", kMaxValueDepth, " lists or dicts"));
  }
  return value;
}

absl::StatusOr<Value> Interpreter::EvalUnbounded(const Expr& expr, Frame& frame) {
  switch (expr.kind) {
    case ExprKind::kLiteral:
      return expr.literal;
    case ExprKind::kName:
      return Lookup(frame, expr.name);
    case ExprKind::kList:
    case ExprKind::kTuple:
    case ExprKind::kDict:
      return EvalLiteralContainer(expr, frame);
    case ExprKind::kAttr: {
      PAGODA_ASSIGN_OR_RETURN(Value object, Eval(*expr.children[0], frame));
      return GetAttr(object, expr.name);
    }
    case ExprKind::kItem: {
      PAGODA_ASSIGN_OR_RETURN(Value object, Eval(*expr.children[0], frame));
      PAGODA_ASSIGN_OR_RETURN(Value key, Eval(*expr.children[1], frame));
      return GetItem(object, key);
    }
    case ExprKind::kSlice: {
      PAGODA_ASSIGN_OR_RETURN(Value object, Eval(*expr.children[0], frame));
      Value bounds[3] = {Value::None(), Value::None(), Value::None()};
      for (int i = 0; i < 3; ++i) {
        if (expr.children[i + 1] == nullptr) continue;
        PAGODA_ASSIGN_OR_RETURN(bounds[i], Eval(*expr.children[i + 1], frame));
      }
      return GetSlice(object, bounds[0], bounds[1], bounds[2]);
    }
    case ExprKind::kCall:
      return EvalCall(expr, frame);
    case ExprKind::kFilter: {
      PAGODA_ASSIGN_OR_RETURN(Value operand, Eval(*expr.children[0], frame));
      PAGODA_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1, frame));
      return expr.filter->apply(*this, operand, args);
    }
    case ExprKind::kTest: {
      PAGODA_ASSIGN_OR_RETURN(Value operand, Eval(*expr.children[0], frame));
      PAGODA_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1, frame));
      PAGODA_ASSIGN_OR_RETURN(bool holds, expr.test->check(*this, operand, args));
      return Value::Bool(holds != expr.negated);
    }
    case ExprKind::kNeg: {
      PAGODA_ASSIGN_OR_RETURN(Value operand, Eval(*expr.children[0], frame));
      return Negate(operand);
    }
    case ExprKind::kPos: {
      PAGODA_ASSIGN_OR_RETURN(Value operand, Eval(*expr.children[0], frame));
      if (!operand.is_number()) return BinaryOperation(BinaryOp::kAdd, Value::Int(0), operand);
      return operand.is_integral() ? Value::Int(operand.int_value()) : operand;
    }
    case ExprKind::kNot: {
      PAGODA_ASSIGN_OR_RETURN(Value operand, Eval(*expr.children[0], frame));
      return Value::Bool(!operand.Truthy());
    }
    case ExprKind::kBinary: {
      PAGODA_ASSIGN_OR_RETURN(Value left, Eval(*expr.children[0], frame));
      PAGODA_ASSIGN_OR_RETURN(Value right, Eval(*expr.children[1], frame));
      return BinaryOperation(expr.op, left, right);
    }
    case ExprKind::kConcat: {
      PAGODA_ASSIGN_OR_RETURN(Value left, Eval(*expr.children[0], frame));
      PAGODA_ASSIGN_OR_RETURN(Value right, Eval(*expr.children[1], frame));
      return Value::String(absl::StrCat(left.Str(), right.Str()));
    }
    case ExprKind::kCompare:
      return EvalCompare(expr, frame);
    case ExprKind::kAnd:
    case ExprKind::kOr: {
      PAGODA_ASSIGN_OR_RETURN(Value left, Eval(*expr.children[0], frame));
      if (left.Truthy() == (expr.kind == ExprKind::kOr)) return left;
      return Eval(*expr.children[1], frame);
    }
    case ExprKind::kCond: {
      PAGODA_ASSIGN_OR_RETURN(Value test, Eval(*expr.children[1], frame));
      if (test.Truthy()) return Eval(*expr.children[0], frame);
      if (expr.children[2] == nullptr) {
        return Value::Undefined(
            "the inline if-expression evaluated to false and no else section was defined");
      }
      return Eval(*expr.children[2], frame);
    }
  }
  return Value();
}

}  // namespace pagoda::chat_template
