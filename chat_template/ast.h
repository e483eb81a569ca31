#pragma once

// The parsed chat template: expression and statement trees, built once when the model loads
// and only read while rendering.
//
// Thread rule: immutable after parsing; any number of renders may read it at once.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat_template/lexer.h"
#include "chat_template/value.h"

namespace pagoda::chat_template {

struct Filter;
struct Test;

enum class ExprKind {
  kLiteral,  // literal
  kName,     // name
  kList,     // children: items
  kTuple,    // children: items
  kDict,     // children: key0, value0, key1, value1, ...
  kAttr,     // children[0].name
  kItem,     // children[0][children[1]]
  kSlice,    // children[0][children[1]:children[2]:children[3]] (null parts allowed)
  kCall,     // children[0](children[1..], kwargs)
  kFilter,   // children[0] | filter(children[1..], kwargs)
  kTest,     // children[0] is [not] test(children[1..])
  kNeg,      // -children[0]
  kPos,      // +children[0]
  kNot,      // not children[0]
  kBinary,   // children[0] op children[1]
  kConcat,   // children[0] ~ children[1]
  kCompare,  // children[0] ops[0] children[1] ops[1] children[2] ...
  kAnd,
  kOr,
  kCond,  // children[0] if children[1] else children[2] (children[2] may be null)
};

enum class BinaryOp { kAdd, kSub, kMul, kDiv, kFloorDiv, kMod, kPow };
enum class CompareOp { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind = ExprKind::kLiteral;
  Position position;
  Value literal;
  std::string name;
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<CompareOp> ops;
  BinaryOp op = BinaryOp::kAdd;
  bool negated = false;
  // Resolved when parsed, so an unknown filter or test fails the template's load.
  const Filter* filter = nullptr;
  const Test* test = nullptr;
};

enum class StmtKind {
  kText,      // text
  kOutput,    // {{ expr }}
  kIf,        // branches, else_body
  kFor,       // for targets in expr [if condition]: body, else_body
  kSet,       // set targets = expr
  kSetAttr,   // set targets[0].attribute = expr
  kBlockSet,  // set targets[0] %}body{% endset
  kMacro,     // macro name(params = defaults): body
  kBreak,
  kContinue,
  kGeneration,  // {% generation %}body{% endgeneration %} (transformers' assistant mask)
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct Stmt {
  StmtKind kind = StmtKind::kText;
  Position position;
  std::string text;
  ExprPtr expr;
  ExprPtr condition;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
  std::vector<std::string> targets;
  std::string attribute;
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // one per param; null where it has none
};

}  // namespace pagoda::chat_template
