#include "chat_template/value.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace pagoda::chat_template {
namespace {

TEST(PythonFloatRepr, MatchesPython) {
  // Expected strings are Python 3's repr(float).
  EXPECT_EQ(PythonFloatRepr(0.1), "0.1");
  EXPECT_EQ(PythonFloatRepr(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(PythonFloatRepr(3.0), "3.0");
  EXPECT_EQ(PythonFloatRepr(-0.0), "-0.0");
  EXPECT_EQ(PythonFloatRepr(1e16), "1e+16");
  EXPECT_EQ(PythonFloatRepr(1e15), "1000000000000000.0");
  EXPECT_EQ(PythonFloatRepr(1.5e-5), "1.5e-05");
  EXPECT_EQ(PythonFloatRepr(0.0001), "0.0001");
  EXPECT_EQ(PythonFloatRepr(123456.789), "123456.789");
  EXPECT_EQ(PythonFloatRepr(1.7976931348623157e308), "1.7976931348623157e+308");
  EXPECT_EQ(PythonFloatRepr(std::numeric_limits<double>::infinity()), "inf");
  EXPECT_EQ(PythonFloatRepr(std::nan("")), "nan");
}

TEST(PythonStringRepr, QuotesAndEscapesAsPython) {
  EXPECT_EQ(PythonStringRepr("abc"), "'abc'");
  EXPECT_EQ(PythonStringRepr("it's"), "\"it's\"");
  EXPECT_EQ(PythonStringRepr("both ' and \""), "'both \\' and \"'");
  EXPECT_EQ(PythonStringRepr("a\nb\tc\\"), "'a\\nb\\tc\\\\'");
  EXPECT_EQ(PythonStringRepr("\x07"), "'\\x07'");
  EXPECT_EQ(PythonStringRepr("é 中 😀"), "'é 中 😀'");
  EXPECT_EQ(PythonStringRepr("\u2028\u00a0\u200d"), "'\\u2028\\xa0\\u200d'");
}

TEST(Value, StrAndReprOfContainers) {
  Dict dict;
  dict.Set("k", Value::String("v"));
  dict.Set("n", Value::None());
  const Value list = Value::List({Value::Int(1), Value::Float(2.0), Value::Bool(true),
                                  Value::MakeDict(dict), Value::Tuple({Value::String("a")})});
  EXPECT_EQ(list.Str(), "[1, 2.0, True, {'k': 'v', 'n': None}, ('a',)]");
  EXPECT_EQ(Value::Undefined("x").Str(), "");
  EXPECT_EQ(Value::None().Str(), "None");
  EXPECT_EQ(Value::BigInt("12345678901234567890").Str(), "12345678901234567890");
}

TEST(Value, TruthinessFollowsPython) {
  EXPECT_FALSE(Value().Truthy());
  EXPECT_FALSE(Value::None().Truthy());
  EXPECT_FALSE(Value::String("").Truthy());
  EXPECT_FALSE(Value::List({}).Truthy());
  EXPECT_FALSE(Value::Int(0).Truthy());
  EXPECT_FALSE(Value::Float(0.0).Truthy());
  EXPECT_TRUE(Value::String(" ").Truthy());
  EXPECT_TRUE(Value::Namespace({}).Truthy());
}

TEST(Value, EqualityAndOrder) {
  EXPECT_TRUE(Equal(Value::Int(1), Value::Float(1.0)));
  EXPECT_TRUE(Equal(Value::Bool(true), Value::Int(1)));
  EXPECT_FALSE(Equal(Value::String("1"), Value::Int(1)));
  EXPECT_TRUE(Equal(Value(), Value::Undefined("other")));
  Dict a, b;
  a.Set("x", Value::Int(1));
  a.Set("y", Value::Int(2));
  b.Set("y", Value::Int(2));
  b.Set("x", Value::Float(1.0));
  EXPECT_TRUE(Equal(Value::MakeDict(a), Value::MakeDict(b)));  // order-free, as in Python
  EXPECT_FALSE(Equal(Value::List({Value::Int(1)}), Value::Tuple({Value::Int(1)})));
  EXPECT_TRUE(*Less(Value::String("a"), Value::String("b")));
  EXPECT_TRUE(*Less(Value::String("z"), Value::String("é")));  // code point order
  EXPECT_TRUE(*Less(Value::List({Value::Int(1)}), Value::List({Value::Int(1), Value::Int(0)})));
  EXPECT_FALSE(Less(Value::Int(1), Value::String("1")).ok());
}

TEST(Utf8, InvalidBytesBecomeReplacementCharacters) {
  const auto points = DecodeUtf8("a\xff\xc3");
  ASSERT_EQ(points.size(), 3u);
  EXPECT_EQ(points[1], 0xFFFDu);
  EXPECT_EQ(points[2], 0xFFFDu);
  EXPECT_EQ(EncodeUtf8(DecodeUtf8("é😀")), "é😀");
  EXPECT_EQ(CodePointCount("é😀a"), 3u);
  EXPECT_TRUE(IsPythonSpace(0x3000));
  EXPECT_TRUE(IsPythonSpace(0x1F));
  EXPECT_FALSE(IsPythonSpace(0x200B));
}

}  // namespace
}  // namespace pagoda::chat_template
