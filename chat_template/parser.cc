#include "chat_template/parser.h"

#include <initializer_list>
#include <utility>

#include "absl/strings/str_cat.h"
#include "chat_template/builtins.h"

namespace pagoda::chat_template {
namespace {

// Tags Jinja2 has that chat templates do not need; refused by name.
constexpr absl::string_view kUnsupportedTags[] = {
    "include",    "import", "from",  "extends",   "block",    "call",    "filter",    "with",
    "autoescape", "do",     "trans", "pluralize", "endblock", "endcall", "endfilter", "endwith"};

// Recursive descent with Jinja2's precedence. Each Parse* returns null on error, with the
// first error kept in error_.
class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : tokens_(tokens) {}

  absl::StatusOr<Body> Run() {
    Body body;
    if (!Subparse({}, body)) return error_;
    return body;
  }

 private:
  // --- token stream ---
  const Token& Current() const { return tokens_[index_]; }
  const Token& Peek(size_t ahead = 1) const {
    return tokens_[std::min(index_ + ahead, tokens_.size() - 1)];
  }
  void Advance() {
    if (index_ + 1 < tokens_.size()) ++index_;
  }
  bool IsOp(absl::string_view op) const {
    return Current().kind == TokenKind::kOperator && Current().text == op;
  }
  bool IsName(absl::string_view name) const {
    return Current().kind == TokenKind::kName && Current().text == name;
  }
  bool SkipOp(absl::string_view op) {
    if (!IsOp(op)) return false;
    Advance();
    return true;
  }
  bool SkipName(absl::string_view name) {
    if (!IsName(name)) return false;
    Advance();
    return true;
  }

  static std::string Describe(const Token& token) {
    switch (token.kind) {
      case TokenKind::kEnd:
        return "end of template";
      case TokenKind::kBlockEnd:
        return "end of statement block";
      case TokenKind::kVarEnd:
        return "end of print statement";
      case TokenKind::kString:
        return "string";
      case TokenKind::kInt:
      case TokenKind::kFloat:
        return "number";
      default:
        return absl::StrCat("'", token.text, "'");
    }
  }

  bool Fail(Position position, absl::string_view what) {
    if (error_.ok()) error_ = ErrorAt(position, what);
    return false;
  }
  std::nullptr_t FailExpr(Position position, absl::string_view what) {
    Fail(position, what);
    return nullptr;
  }
  bool Expect(TokenKind kind, absl::string_view what) {
    if (Current().kind == kind) {
      Advance();
      return true;
    }
    return Fail(Current().position, absl::StrCat("expected ", what, ", got ", Describe(Current())));
  }
  bool ExpectOp(absl::string_view op) {
    if (SkipOp(op)) return true;
    return Fail(Current().position, absl::StrCat("expected '", op, "', got ", Describe(Current())));
  }
  bool ExpectBlockEnd() { return Expect(TokenKind::kBlockEnd, "'%}'"); }

  // Counts nesting; false (with an error) past kMaxNesting.
  class Nest {
   public:
    explicit Nest(Parser& parser) : parser_(parser) { ++parser_.depth_; }
    ~Nest() { --parser_.depth_; }
    bool ok() const {
      return parser_.depth_ <= kMaxNesting ||
             parser_.Fail(parser_.Current().position, "template nesting is too deep");
    }

   private:
    Parser& parser_;
  };

  // --- statements ---
  // Parses until a block tag named in `ends` (left unconsumed, at its name) or the end.
  bool Subparse(std::initializer_list<absl::string_view> ends, Body& body) {
    Nest nest(*this);
    if (!nest.ok()) return false;
    while (true) {
      const Token& token = Current();
      switch (token.kind) {
        case TokenKind::kText: {
          auto stmt = NewStmt(StmtKind::kText, token.position);
          stmt->text = token.text;
          body.push_back(std::move(stmt));
          Advance();
          break;
        }
        case TokenKind::kVarBegin: {
          Advance();
          auto stmt = NewStmt(StmtKind::kOutput, token.position);
          stmt->expr = ParseTuple(true, false);
          if (!stmt->expr || !Expect(TokenKind::kVarEnd, "'}}'")) return false;
          body.push_back(std::move(stmt));
          break;
        }
        case TokenKind::kBlockBegin: {
          Advance();
          for (absl::string_view end : ends) {
            if (IsName(end)) return true;
          }
          if (!ParseStatement(body)) return false;
          break;
        }
        case TokenKind::kEnd:
          if (ends.size() == 0) return true;
          return Fail(token.position,
                      absl::StrCat("unexpected end of template, expected '", *ends.begin(), "'"));
        default:
          return Fail(token.position, absl::StrCat("unexpected ", Describe(token)));
      }
    }
  }

  static std::unique_ptr<Stmt> NewStmt(StmtKind kind, Position position) {
    auto stmt = std::make_unique<Stmt>();
    stmt->kind = kind;
    stmt->position = position;
    return stmt;
  }

  bool ParseStatement(Body& body) {
    const Token& token = Current();
    if (token.kind != TokenKind::kName) return Fail(token.position, "expected a tag name");
    const std::string name = token.text;
    const Position position = token.position;
    Advance();
    std::unique_ptr<Stmt> stmt;
    if (name == "if") {
      stmt = ParseIf(position);
    } else if (name == "for") {
      stmt = ParseFor(position);
    } else if (name == "set") {
      stmt = ParseSet(position);
    } else if (name == "macro") {
      stmt = ParseMacro(position);
    } else if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) return Fail(position, absl::StrCat("'", name, "' outside a loop"));
      stmt = NewStmt(name == "break" ? StmtKind::kBreak : StmtKind::kContinue, position);
      if (!ExpectBlockEnd()) return false;
    } else if (name == "generation") {
      stmt = NewStmt(StmtKind::kGeneration, position);
      if (!ExpectBlockEnd() || !ParseBlockBody("endgeneration", stmt->body)) return false;
    } else if (name == "raw") {
      return Fail(position, "'raw' without a matching 'endraw'");
    } else {
      for (absl::string_view unsupported : kUnsupportedTags) {
        if (name == unsupported) {
          return Fail(position, absl::StrCat("the '", name, "' tag is not supported"));
        }
      }
      return Fail(position, absl::StrCat("unknown tag '", name, "'"));
    }
    if (!stmt) return false;
    body.push_back(std::move(stmt));
    return true;
  }

  // The body up to `{% end %}`, consuming the end tag.
  bool ParseBlockBody(absl::string_view end, Body& body) {
    if (!Subparse({end}, body)) return false;
    Advance();
    return ExpectBlockEnd();
  }

  std::unique_ptr<Stmt> ParseIf(Position position) {
    auto stmt = NewStmt(StmtKind::kIf, position);
    while (true) {
      ExprPtr condition = ParseTuple(false, false);
      if (!condition || !ExpectBlockEnd()) return nullptr;
      Body branch;
      if (!Subparse({"elif", "else", "endif"}, branch)) return nullptr;
      stmt->branches.emplace_back(std::move(condition), std::move(branch));
      if (SkipName("elif")) continue;
      if (SkipName("else")) {
        if (!ExpectBlockEnd() || !ParseBlockBody("endif", stmt->else_body)) return nullptr;
        return stmt;
      }
      Advance();  // endif
      if (!ExpectBlockEnd()) return nullptr;
      return stmt;
    }
  }

  bool ParseTargets(std::vector<std::string>& targets) {
    const bool parenthesized = SkipOp("(");
    do {
      if (Current().kind != TokenKind::kName) {
        return Fail(Current().position, "expected a variable name");
      }
      targets.push_back(Current().text);
      Advance();
    } while (SkipOp(","));
    return !parenthesized || ExpectOp(")");
  }

  std::unique_ptr<Stmt> ParseFor(Position position) {
    auto stmt = NewStmt(StmtKind::kFor, position);
    if (!ParseTargets(stmt->targets)) return nullptr;
    if (!SkipName("in")) {
      Fail(Current().position, absl::StrCat("expected 'in', got ", Describe(Current())));
      return nullptr;
    }
    stmt->expr = ParseTuple(false, false);
    if (!stmt->expr) return nullptr;
    if (SkipName("if")) {
      stmt->condition = ParseExpression(true);
      if (!stmt->condition) return nullptr;
    }
    if (IsName("recursive")) return FailExpr(position, "recursive loops are not supported");
    if (!ExpectBlockEnd()) return nullptr;
    ++loop_depth_;
    const bool ok = Subparse({"endfor", "else"}, stmt->body);
    --loop_depth_;
    if (!ok) return nullptr;
    if (SkipName("else")) {
      if (!ExpectBlockEnd() || !Subparse({"endfor"}, stmt->else_body)) return nullptr;
    }
    Advance();  // endfor
    if (!ExpectBlockEnd()) return nullptr;
    return stmt;
  }

  std::unique_ptr<Stmt> ParseSet(Position position) {
    auto stmt = NewStmt(StmtKind::kSet, position);
    if (Current().kind == TokenKind::kName && Peek().kind == TokenKind::kOperator &&
        Peek().text == "." && Peek(2).kind == TokenKind::kName) {
      stmt->kind = StmtKind::kSetAttr;
      stmt->targets.push_back(Current().text);
      stmt->attribute = Peek(2).text;
      Advance();
      Advance();
      Advance();
    } else if (!ParseTargets(stmt->targets)) {
      return nullptr;
    }
    if (SkipOp("=")) {
      stmt->expr = ParseTuple(true, false);
      if (!stmt->expr || !ExpectBlockEnd()) return nullptr;
      return stmt;
    }
    if (stmt->kind != StmtKind::kSet || stmt->targets.size() != 1) {
      return FailExpr(Current().position, "expected '='");
    }
    stmt->kind = StmtKind::kBlockSet;
    if (IsOp("|")) {
      // The filters apply to the block's text: parse them over a placeholder literal.
      auto placeholder = NewExpr(ExprKind::kLiteral, Current().position);
      stmt->expr = ParseFilterExpr(std::move(placeholder));
      if (!stmt->expr) return nullptr;
    }
    if (!ExpectBlockEnd() || !ParseBlockBody("endset", stmt->body)) return nullptr;
    return stmt;
  }

  std::unique_ptr<Stmt> ParseMacro(Position position) {
    auto stmt = NewStmt(StmtKind::kMacro, position);
    if (Current().kind != TokenKind::kName) return FailExpr(position, "expected a macro name");
    stmt->name = Current().text;
    Advance();
    if (!ExpectOp("(")) return nullptr;
    while (!IsOp(")")) {
      if (!stmt->params.empty() && !ExpectOp(",")) return nullptr;
      if (IsOp(")")) break;
      if (Current().kind != TokenKind::kName) {
        return FailExpr(Current().position, "expected a parameter name");
      }
      stmt->params.push_back(Current().text);
      Advance();
      ExprPtr value;
      if (SkipOp("=")) {
        value = ParseExpression(true);
        if (!value) return nullptr;
      }
      stmt->defaults.push_back(std::move(value));
    }
    Advance();  // )
    if (!ExpectBlockEnd()) return nullptr;
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    const bool ok = Subparse({"endmacro"}, stmt->body);
    loop_depth_ = saved_loops;
    if (!ok) return nullptr;
    Advance();  // endmacro
    SkipName(stmt->name);
    if (!ExpectBlockEnd()) return nullptr;
    return stmt;
  }

  // --- expressions ---
  static ExprPtr NewExpr(ExprKind kind, Position position) {
    auto expr = std::make_unique<Expr>();
    expr->kind = kind;
    expr->position = position;
    return expr;
  }

  bool AtTupleEnd(bool explicit_parentheses) const {
    const TokenKind kind = Current().kind;
    return kind == TokenKind::kVarEnd || kind == TokenKind::kBlockEnd || kind == TokenKind::kEnd ||
           (explicit_parentheses && IsOp(")"));
  }

  ExprPtr ParseTuple(bool with_condexpr, bool explicit_parentheses) {
    const Position position = Current().position;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty() && !ExpectOp(",")) return nullptr;
      if (AtTupleEnd(explicit_parentheses)) break;
      ExprPtr item = with_condexpr ? ParseExpression(true) : ParseOr();
      if (!item) return nullptr;
      items.push_back(std::move(item));
      if (IsOp(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parentheses) {
        return FailExpr(Current().position,
                        absl::StrCat("expected an expression, got ", Describe(Current())));
      }
    }
    auto tuple = NewExpr(ExprKind::kTuple, position);
    tuple->children = std::move(items);
    return tuple;
  }

  ExprPtr ParseExpression(bool with_condexpr) {
    Nest nest(*this);
    if (!nest.ok()) return nullptr;
    ExprPtr expr = ParseOr();
    if (!expr || !with_condexpr) return expr;
    while (IsName("if")) {
      const Position position = Current().position;
      Advance();
      auto cond = NewExpr(ExprKind::kCond, position);
      ExprPtr test = ParseOr();
      if (!test) return nullptr;
      ExprPtr otherwise;
      if (SkipName("else")) {
        otherwise = ParseExpression(true);
        if (!otherwise) return nullptr;
      }
      cond->children.push_back(std::move(expr));
      cond->children.push_back(std::move(test));
      cond->children.push_back(std::move(otherwise));
      expr = std::move(cond);
    }
    return expr;
  }

  ExprPtr Combine(ExprKind kind, Position position, ExprPtr left, ExprPtr right) {
    auto expr = NewExpr(kind, position);
    expr->children.push_back(std::move(left));
    expr->children.push_back(std::move(right));
    return expr;
  }

  ExprPtr ParseOr() {
    ExprPtr left = ParseAnd();
    while (left && IsName("or")) {
      const Position position = Current().position;
      Advance();
      ExprPtr right = ParseAnd();
      if (!right) return nullptr;
      left = Combine(ExprKind::kOr, position, std::move(left), std::move(right));
    }
    return left;
  }

  ExprPtr ParseAnd() {
    ExprPtr left = ParseNot();
    while (left && IsName("and")) {
      const Position position = Current().position;
      Advance();
      ExprPtr right = ParseNot();
      if (!right) return nullptr;
      left = Combine(ExprKind::kAnd, position, std::move(left), std::move(right));
    }
    return left;
  }

  ExprPtr ParseNot() {
    if (!IsName("not")) return ParseCompare();
    Nest nest(*this);
    if (!nest.ok()) return nullptr;
    auto expr = NewExpr(ExprKind::kNot, Current().position);
    Advance();
    ExprPtr operand = ParseNot();
    if (!operand) return nullptr;
    expr->children.push_back(std::move(operand));
    return expr;
  }

  bool ParseCompareOp(CompareOp& op) {
    static constexpr std::pair<absl::string_view, CompareOp> kOps[] = {
        {"==", CompareOp::kEq}, {"!=", CompareOp::kNe}, {"<", CompareOp::kLt},
        {"<=", CompareOp::kLe}, {">", CompareOp::kGt},  {">=", CompareOp::kGe}};
    for (const auto& [text, value] : kOps) {
      if (SkipOp(text)) {
        op = value;
        return true;
      }
    }
    if (SkipName("in")) {
      op = CompareOp::kIn;
      return true;
    }
    if (IsName("not") && Peek().kind == TokenKind::kName && Peek().text == "in") {
      Advance();
      Advance();
      op = CompareOp::kNotIn;
      return true;
    }
    return false;
  }

  ExprPtr ParseCompare() {
    const Position position = Current().position;
    ExprPtr first = ParseMath1();
    if (!first) return nullptr;
    CompareOp op;
    if (!ParseCompareOp(op)) return first;
    auto compare = NewExpr(ExprKind::kCompare, position);
    compare->children.push_back(std::move(first));
    do {
      ExprPtr next = ParseMath1();
      if (!next) return nullptr;
      compare->ops.push_back(op);
      compare->children.push_back(std::move(next));
    } while (ParseCompareOp(op));
    return compare;
  }

  // One precedence level of left-associative binary operators.
  template <typename Next>
  ExprPtr ParseBinaryLevel(std::initializer_list<std::pair<absl::string_view, BinaryOp>> ops,
                           Next next) {
    ExprPtr left = (this->*next)();
    while (left) {
      const auto* match = static_cast<const std::pair<absl::string_view, BinaryOp>*>(nullptr);
      for (const auto& entry : ops) {
        if (IsOp(entry.first)) match = &entry;
      }
      if (match == nullptr) break;
      const Position position = Current().position;
      Advance();
      ExprPtr right = (this->*next)();
      if (!right) return nullptr;
      left = Combine(ExprKind::kBinary, position, std::move(left), std::move(right));
      left->op = match->second;
    }
    return left;
  }

  ExprPtr ParseMath1() {
    return ParseBinaryLevel({{"+", BinaryOp::kAdd}, {"-", BinaryOp::kSub}}, &Parser::ParseConcat);
  }

  ExprPtr ParseConcat() {
    ExprPtr left = ParseMath2();
    while (left && IsOp("~")) {
      const Position position = Current().position;
      Advance();
      ExprPtr right = ParseMath2();
      if (!right) return nullptr;
      left = Combine(ExprKind::kConcat, position, std::move(left), std::move(right));
    }
    return left;
  }

  ExprPtr ParseMath2() {
    return ParseBinaryLevel({{"*", BinaryOp::kMul},
                             {"/", BinaryOp::kDiv},
                             {"//", BinaryOp::kFloorDiv},
                             {"%", BinaryOp::kMod}},
                            &Parser::ParsePow);
  }

  ExprPtr ParsePow() {
    return ParseBinaryLevel({{"**", BinaryOp::kPow}}, &Parser::ParseUnaryWithFilters);
  }

  ExprPtr ParseUnaryWithFilters() { return ParseUnary(true); }

  ExprPtr ParseUnary(bool with_filter) {
    Nest nest(*this);
    if (!nest.ok()) return nullptr;
    const Position position = Current().position;
    ExprPtr expr;
    if (IsOp("-") || IsOp("+")) {
      const ExprKind kind = IsOp("-") ? ExprKind::kNeg : ExprKind::kPos;
      Advance();
      ExprPtr operand = ParseUnary(false);
      if (!operand) return nullptr;
      expr = NewExpr(kind, position);
      expr->children.push_back(std::move(operand));
    } else {
      expr = ParsePrimary();
    }
    if (expr) expr = ParsePostfix(std::move(expr));
    if (expr && with_filter) expr = ParseFilterExpr(std::move(expr));
    return expr;
  }

  ExprPtr ParseLiteral(Value value, Position position) {
    auto expr = NewExpr(ExprKind::kLiteral, position);
    expr->literal = std::move(value);
    Advance();
    return expr;
  }

  ExprPtr ParsePrimary() {
    const Token& token = Current();
    const Position position = token.position;
    switch (token.kind) {
      case TokenKind::kName:
        if (token.text == "true" || token.text == "True")
          return ParseLiteral(Value::Bool(true), position);
        if (token.text == "false" || token.text == "False")
          return ParseLiteral(Value::Bool(false), position);
        if (token.text == "none" || token.text == "None")
          return ParseLiteral(Value::None(), position);
        {
          auto name = NewExpr(ExprKind::kName, position);
          name->name = token.text;
          Advance();
          return name;
        }
      case TokenKind::kString: {
        std::string text;
        while (Current().kind == TokenKind::kString) {
          text += Current().text;
          Advance();
        }
        auto literal = NewExpr(ExprKind::kLiteral, position);
        literal->literal = Value::String(std::move(text));
        return literal;
      }
      case TokenKind::kInt:
        return ParseLiteral(token.big_int ? Value::BigInt(token.text) : Value::Int(token.int_value),
                            position);
      case TokenKind::kFloat:
        return ParseLiteral(Value::Float(token.float_value), position);
      default:
        break;
    }
    if (SkipOp("(")) {
      ExprPtr inner = ParseTuple(true, true);
      if (!inner || !ExpectOp(")")) return nullptr;
      return inner;
    }
    if (SkipOp("[")) return ParseSequence(ExprKind::kList, "]", position);
    if (SkipOp("{")) return ParseSequence(ExprKind::kDict, "}", position);
    return FailExpr(position, absl::StrCat("unexpected ", Describe(token)));
  }

  // A list literal's items, or a dict literal's key: value pairs, up to `close`.
  ExprPtr ParseSequence(ExprKind kind, absl::string_view close, Position position) {
    auto expr = NewExpr(kind, position);
    while (!IsOp(close)) {
      if (!expr->children.empty() && !ExpectOp(",")) return nullptr;
      if (IsOp(close)) break;
      ExprPtr item = ParseExpression(true);
      if (!item) return nullptr;
      expr->children.push_back(std::move(item));
      if (kind == ExprKind::kDict) {
        if (!ExpectOp(":")) return nullptr;
        ExprPtr value = ParseExpression(true);
        if (!value) return nullptr;
        expr->children.push_back(std::move(value));
      }
    }
    Advance();
    return expr;
  }

  ExprPtr ParsePostfix(ExprPtr expr) {
    while (expr) {
      const Position position = Current().position;
      if (SkipOp(".")) {
        if (Current().kind == TokenKind::kName) {
          auto attr = NewExpr(ExprKind::kAttr, position);
          attr->name = Current().text;
          attr->children.push_back(std::move(expr));
          Advance();
          expr = std::move(attr);
        } else if (Current().kind == TokenKind::kInt) {
          auto index = NewExpr(ExprKind::kLiteral, Current().position);
          index->literal = Value::Int(Current().int_value);
          Advance();
          expr = Combine(ExprKind::kItem, position, std::move(expr), std::move(index));
        } else {
          return FailExpr(Current().position, "expected an attribute name after '.'");
        }
      } else if (SkipOp("[")) {
        expr = ParseSubscript(std::move(expr), position);
      } else if (IsOp("(")) {
        expr = ParseCall(std::move(expr));
      } else {
        break;
      }
    }
    return expr;
  }

  ExprPtr ParseSubscript(ExprPtr object, Position position) {
    ExprPtr parts[3];
    bool slice = false;
    if (!IsOp(":")) {
      parts[0] = ParseExpression(true);
      if (!parts[0]) return nullptr;
    }
    for (int i = 1; i < 3 && SkipOp(":"); ++i) {
      slice = true;
      if (!IsOp("]") && !IsOp(":")) {
        parts[i] = ParseExpression(true);
        if (!parts[i]) return nullptr;
      }
    }
    if (!ExpectOp("]")) return nullptr;
    if (!slice) return Combine(ExprKind::kItem, position, std::move(object), std::move(parts[0]));
    auto expr = NewExpr(ExprKind::kSlice, position);
    expr->children.push_back(std::move(object));
    for (auto& part : parts) expr->children.push_back(std::move(part));
    return expr;
  }

  // '(' args ')' into expr's children (after any already there) and kwargs.
  bool ParseArgs(Expr& expr) {
    if (!ExpectOp("(")) return false;
    bool first = true;
    while (!IsOp(")")) {
      if (!first && !ExpectOp(",")) return false;
      first = false;
      if (IsOp(")")) break;
      if (IsOp("*") || IsOp("**"))
        return Fail(Current().position, "*args and **kwargs are not supported");
      if (Current().kind == TokenKind::kName && Peek().kind == TokenKind::kOperator &&
          Peek().text == "=") {
        std::string name = Current().text;
        Advance();
        Advance();
        ExprPtr value = ParseExpression(true);
        if (!value) return false;
        expr.kwargs.emplace_back(std::move(name), std::move(value));
        continue;
      }
      if (!expr.kwargs.empty())
        return Fail(Current().position, "positional argument after a keyword argument");
      ExprPtr value = ParseExpression(true);
      if (!value) return false;
      expr.children.push_back(std::move(value));
    }
    Advance();
    return true;
  }

  ExprPtr ParseCall(ExprPtr callee) {
    auto call = NewExpr(ExprKind::kCall, Current().position);
    call->children.push_back(std::move(callee));
    if (!ParseArgs(*call)) return nullptr;
    return call;
  }

  std::string ParseDottedName() {
    std::string name = Current().text;
    Advance();
    while (IsOp(".") && Peek().kind == TokenKind::kName) {
      Advance();
      absl::StrAppend(&name, ".", Current().text);
      Advance();
    }
    return name;
  }

  ExprPtr ParseFilterExpr(ExprPtr expr) {
    while (expr) {
      const Position position = Current().position;
      if (SkipOp("|")) {
        if (Current().kind != TokenKind::kName)
          return FailExpr(Current().position, "expected a filter name");
        auto filter = NewExpr(ExprKind::kFilter, position);
        filter->name = ParseDottedName();
        filter->filter = FindFilter(filter->name);
        if (filter->filter == nullptr) {
          return FailExpr(position, absl::StrCat("no filter named '", filter->name, "'"));
        }
        filter->children.push_back(std::move(expr));
        if (IsOp("(") && !ParseArgs(*filter)) return nullptr;
        expr = std::move(filter);
      } else if (SkipName("is")) {
        expr = ParseTest(std::move(expr), position);
      } else if (IsOp("(")) {
        expr = ParseCall(std::move(expr));
      } else {
        break;
      }
    }
    return expr;
  }

  ExprPtr ParseTest(ExprPtr operand, Position position) {
    auto test = NewExpr(ExprKind::kTest, position);
    test->negated = SkipName("not");
    if (Current().kind != TokenKind::kName)
      return FailExpr(Current().position, "expected a test name");
    test->name = ParseDottedName();
    test->test = FindTest(test->name);
    if (test->test == nullptr)
      return FailExpr(position, absl::StrCat("no test named '", test->name, "'"));
    test->children.push_back(std::move(operand));
    if (IsOp("(")) {
      if (!ParseArgs(*test)) return nullptr;
      return test;
    }
    const Token& next = Current();
    const bool starts_primary = next.kind == TokenKind::kName || next.kind == TokenKind::kString ||
                                next.kind == TokenKind::kInt || next.kind == TokenKind::kFloat ||
                                IsOp("(") || IsOp("[") || IsOp("{");
    if (starts_primary && !IsName("else") && !IsName("or") && !IsName("and")) {
      if (IsName("is")) return FailExpr(next.position, "tests cannot be chained with 'is'");
      ExprPtr arg = ParsePrimary();
      if (arg) arg = ParsePostfix(std::move(arg));
      if (!arg) return nullptr;
      test->children.push_back(std::move(arg));
    }
    return test;
  }

  const std::vector<Token>& tokens_;
  size_t index_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  absl::Status error_;
};

}  // namespace

absl::StatusOr<Body> Parse(const std::vector<Token>& tokens) { return Parser(tokens).Run(); }

}  // namespace pagoda::chat_template
