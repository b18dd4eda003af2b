// The console's embedded files (ui/ compiled in by cmake/embed_ui.cmake): present, typed, small,
// and free of inline scripts and styles that the Content-Security-Policy would refuse.
#include <gtest/gtest.h>

#include <string>

#include "ui/assets.h"

namespace thaw::ui {
namespace {

TEST(UiAssetsTest, EveryFileTheIndexNamesIsEmbedded) {
  const Asset* index = FindAsset("");
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(index->path, "index.html");
  EXPECT_EQ(index->content_type, "text/html; charset=utf-8");
  for (const char* path : {"app.js", "chart.js", "app.css", "icon.svg"}) {
    const Asset* a = FindAsset(path);
    ASSERT_NE(a, nullptr) << path;
    EXPECT_NE(index->body.find(std::string("\"") + path + "\""), std::string_view::npos) << path;
    EXPECT_FALSE(a->body.empty()) << path;
  }
  EXPECT_EQ(FindAsset("app.js")->content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(FindAsset("nope.js"), nullptr);
}

TEST(UiAssetsTest, NoInlineScriptOrStyleAndUnder300KB) {
  size_t total = 0;
  for (const Asset& a : Assets()) total += a.body.size();
  EXPECT_LT(total, 300u * 1024) << "the console must stay light (uncompressed, even)";
  const std::string_view html = FindAsset("index.html")->body;
  EXPECT_EQ(html.find("<script>"), std::string_view::npos);
  EXPECT_EQ(html.find("<style"), std::string_view::npos);
  EXPECT_EQ(html.find(" style="), std::string_view::npos);
  EXPECT_EQ(html.find(" onclick="), std::string_view::npos);
  EXPECT_EQ(html.find("http"), std::string_view::npos) << "nothing from another origin";
}

}  // namespace
}  // namespace thaw::ui
