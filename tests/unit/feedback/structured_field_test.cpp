#include "sluice/feedback/structured_field.hpp"

#include <catch2/catch.hpp>

namespace sf = sluice::feedback::sf;
using Type = sf::BareItem::Type;

TEST_CASE("a list of strings with parameters (RateLimit, current draft)", "[feedback][sf]") {
    auto list = sf::parse_list(R"("default";r=50;t=30, "daily";r=0;t=3600)");
    REQUIRE(list);
    REQUIRE(list->size() == 2);
    const auto& first = (*list)[0];
    CHECK_FALSE(first.is_inner_list);
    CHECK(first.item.type == Type::string);
    CHECK(first.item.text == "default");
    REQUIRE(sf::find_param(first.params, "r"));
    CHECK(sf::find_param(first.params, "r")->integer == 50);
    CHECK(sf::find_param(first.params, "t")->integer == 30);
    CHECK_FALSE(sf::find_param(first.params, "q"));
    CHECK((*list)[1].item.text == "daily");
    CHECK(sf::find_param((*list)[1].params, "r")->integer == 0);
}

TEST_CASE("bare item types", "[feedback][sf]") {
    auto list =
        sf::parse_list(R"(42, -7, 1.5, -0.25, "a \"q\" \\", tok/en:x, *star, :aGk=:, ?1, ?0, @1700000000)");
    REQUIRE(list);
    REQUIRE(list->size() == 11);
    CHECK(((*list)[0].item.type == Type::integer && (*list)[0].item.integer == 42));
    CHECK((*list)[1].item.integer == -7);
    CHECK(((*list)[2].item.type == Type::decimal && (*list)[2].item.decimal == 1.5));
    CHECK((*list)[3].item.decimal == -0.25);
    CHECK((*list)[3].item.number() == -0.25);
    CHECK(((*list)[4].item.type == Type::string && (*list)[4].item.text == R"(a "q" \)"));
    CHECK(((*list)[5].item.type == Type::token && (*list)[5].item.text == "tok/en:x"));
    CHECK((*list)[6].item.text == "*star");
    CHECK(((*list)[7].item.type == Type::byte_sequence && (*list)[7].item.text == "aGk="));
    CHECK(((*list)[8].item.type == Type::boolean && (*list)[8].item.integer == 1));
    CHECK((*list)[9].item.integer == 0);
    CHECK(((*list)[10].item.type == Type::date && (*list)[10].item.integer == 1'700'000'000));
}

TEST_CASE("parameters: bare keys are true, the last duplicate wins", "[feedback][sf]") {
    auto list = sf::parse_list("a;x;y=1;x=?0;  z=2");
    REQUIRE(list);
    const auto& params = (*list)[0].params;
    REQUIRE(params.size() == 3);
    CHECK(params[0].first == "x");
    CHECK(params[0].second.integer == 0);  // overwritten in place
    CHECK(params[1].first == "y");
    CHECK(params[2].first == "z");
}

TEST_CASE("inner lists", "[feedback][sf]") {
    auto list = sf::parse_list(R"(("a" "b";p=1);w=60, 5)");
    REQUIRE(list);
    REQUIRE(list->size() == 2);
    CHECK((*list)[0].is_inner_list);
    REQUIRE((*list)[0].inner.size() == 2);
    CHECK((*list)[0].inner[1].text == "b");
    CHECK(sf::find_param((*list)[0].params, "w")->integer == 60);
    CHECK(sf::parse_list("()"));
    CHECK_FALSE(sf::parse_list("(a b"));
    CHECK_FALSE(sf::parse_list("(a,b)"));
}

TEST_CASE("whitespace and empty fields", "[feedback][sf]") {
    CHECK(sf::parse_list("")->empty());
    CHECK(sf::parse_list("   ")->empty());
    CHECK(sf::parse_list(" 1 ,\t2 ")->size() == 2);
    CHECK_FALSE(sf::parse_list("1,"));
    CHECK_FALSE(sf::parse_list(",1"));
    CHECK_FALSE(sf::parse_list("1 2"));
}

TEST_CASE("dictionaries (RateLimit, draft -07)", "[feedback][sf]") {
    auto dict = sf::parse_dictionary("limit=100, remaining=50, reset=5");
    REQUIRE(dict);
    REQUIRE(dict->size() == 3);
    CHECK((*dict)[0].first == "limit");
    CHECK((*dict)[0].second.item.integer == 100);
    CHECK((*dict)[2].second.item.integer == 5);

    auto flags = sf::parse_dictionary("a, b=?0, c;p=1, a=2");
    REQUIRE(flags);
    REQUIRE(flags->size() == 3);
    CHECK((*flags)[0].second.item.integer == 2);  // the last `a` wins
    CHECK((*flags)[1].second.item.type == Type::boolean);
    CHECK((*flags)[2].second.item.integer == 1);  // bare key: true, with parameters
    CHECK(sf::find_param((*flags)[2].second.params, "p"));

    CHECK_FALSE(sf::parse_dictionary(R"("default";r=50)"));  // a list is not a dictionary
    CHECK_FALSE(sf::parse_list("limit=100, remaining=50"));  // and a dictionary is not a list
}

TEST_CASE("syntax errors fail the whole field", "[feedback][sf]") {
    for (const char* bad : {
             "Limit=1",           // keys are lower case
             "1234567890123456",  // 16 integer digits
             "1234567890123.5",   // 13 digits before the '.'
             "1.2345",            // 4 after
             "1.",                // none after
             "-",                 //
             "\"unterminated",    //
             "\"bad \\escape\"",  // only \" and \\ are escapes
             "\"tab\tinside\"",   //
             ":not base64!:",     //
             "?2",                //
             "@1.5",              // a date is an integer
             "%\"display\"",      // not supported
             "a;",                // a parameter without a key
             "a;B=1",             //
         }) {
        INFO(bad);
        CHECK_FALSE(sf::parse_list(bad));
    }
    CHECK_FALSE(sf::parse_dictionary("limit=100,"));
    CHECK_FALSE(sf::parse_dictionary("=1"));
    CHECK(sf::parse_list("123456789012345"));  // 15 digits is the maximum
    CHECK(sf::parse_list("123456789012.123"));
}
