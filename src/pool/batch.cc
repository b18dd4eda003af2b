#include "pool/batch.h"

#include <boost/json.hpp>

#include "common/json_text.h"

namespace thaw::pool {

namespace json = boost::json;

std::string BatchEvent(const std::vector<std::string_view>& events) {
  std::string out = "{\"batch\":[";
  for (size_t i = 0; i < events.size(); ++i) {
    if (i > 0) out += ',';
    boost::system::error_code ec;
    // Validating costs a parse per event (microseconds for model inputs), and it keeps one
    // caller's bytes from breaking every other caller's event.
    json::parse(events[i], ec);
    if (!ec) {
      out.append(events[i]);
    } else {
      out += json::serialize(json::string(events[i]));
    }
  }
  out += "]}";
  return out;
}

std::string BatchClientContext(const std::vector<std::string>& request_ids) {
  json::array ids;
  ids.reserve(request_ids.size());
  for (const auto& id : request_ids) ids.emplace_back(id);
  return json::serialize(json::object{{"custom", json::object{{"batch_request_ids", ids}}}});
}

namespace {

BatchItem ItemError(const json::value& error) {
  BatchItem item;
  item.failed = true;
  item.error_type = kBatchItemError;
  if (error.is_string()) {
    item.error_message = std::string(error.as_string());
  } else if (error.is_object()) {
    const json::object& o = error.as_object();
    if (auto* t = o.if_contains("errorType"); t != nullptr && t->is_string()) {
      item.error_type = std::string(t->as_string());
    }
    if (auto* m = o.if_contains("errorMessage"); m != nullptr && m->is_string()) {
      item.error_message = std::string(m->as_string());
    }
  } else {
    item.error_message = JsonText(error);
  }
  item.body = json::serialize(
      json::object{{"errorMessage", item.error_message}, {"errorType", item.error_type}});
  return item;
}

}  // namespace

StatusOr<std::vector<BatchItem>> SplitBatchAnswer(std::string_view body, size_t size) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) {
    return InvalidArgument(
        "the handler of a batch returned something that is not JSON: it must "
        "return a list with one item per event of the batch");
  }
  if (!v.is_array()) {
    return InvalidArgument("the handler of a batch of " + std::to_string(size) +
                           " events returned a JSON " + std::string(to_string(v.kind())) +
                           ", not a list with one item per event");
  }
  const json::array& items = v.as_array();
  if (items.size() != size) {
    return InvalidArgument("the handler of a batch of " + std::to_string(size) +
                           " events returned a list of " + std::to_string(items.size()) +
                           " items: it must return one item per event, in order");
  }
  std::vector<BatchItem> out;
  out.reserve(size);
  for (const json::value& item : items) {
    if (item.is_object() && item.as_object().size() == 1) {
      if (auto* e = item.as_object().if_contains("error")) {
        out.push_back(ItemError(*e));
        continue;
      }
    }
    BatchItem ok;
    ok.body = JsonText(item);
    out.push_back(std::move(ok));
  }
  return out;
}

int64_t EvenShare(int64_t total, int64_t size, int64_t index) {
  if (size <= 0) return total;
  return total / size + (index < total % size ? 1 : 0);
}

}  // namespace thaw::pool
