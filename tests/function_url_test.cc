// Function URLs (/fn/{name}/{path}): the HTTP request becomes a payload-2.0 event and the
// function's answer becomes the HTTP response; url_auth decides whether the key is needed.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

// Echoes the event it got inside a full {statusCode, headers, cookies, body} answer, or
// answers a plain value when asked.
const std::string kEcho =
    "import json, base64\n"
    "def handler(event, context):\n"
    "    if event.get('rawPath') == '/plain': return 'just a string'\n"
    "    if event.get('rawPath') == '/binary':\n"
    "        return {'statusCode': 200, 'headers': {'content-type': 'image/png'},\n"
    "                'body': base64.b64encode(b'\\x89PNG\\x00').decode(), 'isBase64Encoded': "
    "True}\n"
    "    return {'statusCode': 201, 'headers': {'x-echo': 'yes'}, 'cookies': ['a=1', 'b=2'],\n"
    "            'body': json.dumps(event)}\n";

TEST(FunctionUrlTest, RequestBecomesEventAndAnswerBecomesResponse) {
  auto server = ThawServer::Start();
  std::string dir = PythonBundle("web", kEcho, "url_auth: none\n");
  ASSERT_EQ(server->Deploy("web", dir).status, 201);
  auto r = server->Call(
      "PUT", "/fn/web/items/42?color=red&size=9&color=blue", R"({"n":1})",
      {{"Content-Type", "application/json"}, {"Cookie", "s=abc; t=def"}, {"X-Custom", "v"}},
      /*auth=*/false);
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.Header("x-echo"), "yes");
  json::object e = json::parse(r.body).as_object();
  EXPECT_EQ(e["version"].as_string(), "2.0");
  EXPECT_EQ(e["rawPath"].as_string(), "/items/42");
  EXPECT_EQ(e["rawQueryString"].as_string(), "color=red&size=9&color=blue");
  EXPECT_EQ(e["queryStringParameters"].as_object()["color"].as_string(), "red,blue");
  EXPECT_EQ(e["headers"].as_object()["x-custom"].as_string(), "v");
  EXPECT_EQ(e["cookies"].as_array().size(), 2u);
  EXPECT_EQ(e["requestContext"].as_object()["http"].as_object()["method"].as_string(), "PUT");
  EXPECT_EQ(e["requestContext"].as_object()["requestId"].as_string(),
            r.Header("x-thaw-request-id"));
  EXPECT_EQ(e["body"].as_string(), R"({"n":1})");
  EXPECT_FALSE(e["isBase64Encoded"].as_bool());

  auto plain = server->Call("GET", "/fn/web/plain", "", {}, false);
  EXPECT_EQ(plain.status, 200);
  EXPECT_EQ(plain.body, "\"just a string\"");
  EXPECT_EQ(plain.Header("content-type"), "application/json");

  auto binary = server->Call("GET", "/fn/web/binary", "", {}, false);
  EXPECT_EQ(binary.status, 200);
  EXPECT_EQ(binary.body, std::string("\x89PNG\x00", 5));
  EXPECT_EQ(binary.Header("content-type"), "image/png");

  auto upload = server->Call("POST", "/fn/web/", std::string("\x01\x02\xff", 3),
                             {{"Content-Type", "application/octet-stream"}}, false);
  json::object ue = json::parse(upload.body).as_object();
  EXPECT_TRUE(ue["isBase64Encoded"].as_bool());
  EXPECT_EQ(ue["body"].as_string(), "AQL/");
  RemoveDir(dir);
}

TEST(FunctionUrlTest, UrlAuthKeyIsTheDefault) {
  auto server = ThawServer::Start();
  std::string dir = PythonBundle("private", kEcho);
  ASSERT_EQ(server->Deploy("private", dir).status, 201);
  EXPECT_EQ(server->Call("GET", "/fn/private/plain", "", {}, false).status, 401);
  EXPECT_EQ(server->Call("GET", "/fn/private/plain").status, 200);
  EXPECT_EQ(server->Call("GET", "/fn/nobody/x").status, 404);
  std::string bad = MakeBundle({{"thaw.yaml", "runtime: python3\nhandler: a.b\nurl_auth: open\n"}});
  auto r = server->Deploy("bad", bad);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("url_auth"), std::string::npos);
  RemoveDir(dir);
  RemoveDir(bad);
}

}  // namespace
}  // namespace thaw::testing
