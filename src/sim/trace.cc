#include "sim/trace.h"

#include <charconv>
#include <cmath>
#include <map>
#include <tuple>

namespace thaw::sim {
namespace {

constexpr int64_t kMaxMinutes = 14 * 1440;  // the dataset's 14 days, at most

std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t start = 0;
  while (true) {
    size_t comma = line.find(',', start);
    if (comma == std::string_view::npos) {
      fields.push_back(line.substr(start));
      return fields;
    }
    fields.push_back(line.substr(start, comma - start));
    start = comma + 1;
  }
}

// Lines without their terminator (LF or CRLF), numbered from 1; blank lines are skipped.
class Lines {
 public:
  explicit Lines(std::string_view text) : text_(text) {}
  bool Next(std::string_view& line, int64_t& number) {
    while (pos_ < text_.size()) {
      size_t end = text_.find('\n', pos_);
      if (end == std::string_view::npos) end = text_.size();
      line = text_.substr(pos_, end - pos_);
      pos_ = end + 1;
      number = ++number_;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (!line.empty()) return true;
    }
    return false;
  }

 private:
  std::string_view text_;
  size_t pos_ = 0;
  int64_t number_ = 0;
};

Status LineError(const std::string& name, int64_t line, const std::string& why) {
  return InvalidArgument(name + " line " + std::to_string(line) + ": " + why);
}

bool ParseCount(std::string_view s, int64_t& out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size() && out >= 0;
}

bool ParseNumber(std::string_view s, double& out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size() && std::isfinite(out) && out >= 0;
}

// The header's columns by name; `required` must all be there.
StatusOr<std::map<std::string, size_t, std::less<>>> Columns(
    const std::vector<std::string_view>& header, const std::vector<std::string>& required,
    const std::string& name) {
  std::map<std::string, size_t, std::less<>> at;
  for (size_t i = 0; i < header.size(); ++i) at.emplace(std::string(header[i]), i);
  for (const std::string& column : required) {
    if (!at.count(column)) return LineError(name, 1, "the header has no column '" + column + "'");
  }
  return at;
}

}  // namespace

StatusOr<Trace> ParseInvocations(std::string_view text, const std::string& name) {
  Lines lines(text);
  std::string_view line;
  int64_t number = 0;
  if (!lines.Next(line, number)) return InvalidArgument(name + ": empty, expected a header line");
  const std::vector<std::string_view> header = SplitFields(line);
  const char* kFixed[] = {"HashOwner", "HashApp", "HashFunction", "Trigger"};
  for (size_t i = 0; i < 4; ++i) {
    if (i >= header.size() || header[i] != kFixed[i]) {
      return LineError(name, number,
                       "expected the header HashOwner,HashApp,HashFunction,Trigger,1,...,1440");
    }
  }
  Trace trace;
  trace.minutes = static_cast<int64_t>(header.size()) - 4;
  if (trace.minutes < 1 || trace.minutes > kMaxMinutes) {
    return LineError(name, number,
                     "expected between 1 and " + std::to_string(kMaxMinutes) + " minute columns");
  }
  for (int64_t m = 1; m <= trace.minutes; ++m) {
    if (header[3 + m] != std::to_string(m)) {
      return LineError(name, number,
                       "column " + std::to_string(4 + m) + " of the header must be '" +
                           std::to_string(m) + "', got '" + std::string(header[3 + m]) + "'");
    }
  }
  std::map<std::tuple<std::string, std::string, std::string>, int64_t> seen;
  while (lines.Next(line, number)) {
    const std::vector<std::string_view> fields = SplitFields(line);
    if (fields.size() != header.size()) {
      return LineError(name, number,
                       "has " + std::to_string(fields.size()) + " fields, the header " +
                           std::to_string(header.size()));
    }
    FunctionTrace f;
    f.owner = fields[0];
    f.app = fields[1];
    f.function = fields[2];
    f.trigger = fields[3];
    if (f.function.empty()) return LineError(name, number, "HashFunction is empty");
    auto [it, fresh] = seen.emplace(std::make_tuple(f.owner, f.app, f.function), number);
    if (!fresh) {
      return LineError(
          name, number,
          "function " + f.function + " is already on line " + std::to_string(it->second));
    }
    f.per_minute.resize(trace.minutes);
    for (int64_t m = 0; m < trace.minutes; ++m) {
      if (!ParseCount(fields[4 + m], f.per_minute[m])) {
        return LineError(name, number,
                         "minute " + std::to_string(m + 1) + ": '" + std::string(fields[4 + m]) +
                             "' is not a count of invocations");
      }
    }
    trace.functions.push_back(std::move(f));
  }
  return trace;
}

Status ApplyDurations(std::string_view text, const std::string& name, Trace& trace) {
  Lines lines(text);
  std::string_view line;
  int64_t number = 0;
  if (!lines.Next(line, number)) return InvalidArgument(name + ": empty, expected a header line");
  const std::vector<std::string_view> header = SplitFields(line);
  auto at = Columns(header, {"HashOwner", "HashApp", "HashFunction", "Average"}, name);
  if (!at.ok()) return at.status();
  std::map<std::tuple<std::string_view, std::string_view, std::string_view>, FunctionTrace*> index;
  for (FunctionTrace& f : trace.functions) index[{f.owner, f.app, f.function}] = &f;
  const size_t owner = at->at("HashOwner"), app = at->at("HashApp");
  const size_t function = at->at("HashFunction"), average = at->at("Average");
  while (lines.Next(line, number)) {
    const std::vector<std::string_view> fields = SplitFields(line);
    if (fields.size() != header.size()) {
      return LineError(name, number,
                       "has " + std::to_string(fields.size()) + " fields, the header " +
                           std::to_string(header.size()));
    }
    double ms = 0;
    if (!ParseNumber(fields[average], ms)) {
      return LineError(name, number,
                       "Average: '" + std::string(fields[average]) + "' is not a duration in ms");
    }
    auto it = index.find({fields[owner], fields[app], fields[function]});
    if (it != index.end()) it->second->duration_ms = ms;
  }
  return Status::Ok();
}

Status ApplyMemory(std::string_view text, const std::string& name, Trace& trace) {
  Lines lines(text);
  std::string_view line;
  int64_t number = 0;
  if (!lines.Next(line, number)) return InvalidArgument(name + ": empty, expected a header line");
  const std::vector<std::string_view> header = SplitFields(line);
  auto at = Columns(header, {"HashOwner", "HashApp", "AverageAllocatedMb"}, name);
  if (!at.ok()) return at.status();
  std::map<std::pair<std::string_view, std::string_view>, std::vector<FunctionTrace*>> index;
  for (FunctionTrace& f : trace.functions) index[{f.owner, f.app}].push_back(&f);
  const size_t owner = at->at("HashOwner"), app = at->at("HashApp");
  const size_t mb = at->at("AverageAllocatedMb");
  while (lines.Next(line, number)) {
    const std::vector<std::string_view> fields = SplitFields(line);
    if (fields.size() != header.size()) {
      return LineError(name, number,
                       "has " + std::to_string(fields.size()) + " fields, the header " +
                           std::to_string(header.size()));
    }
    double memory = 0;
    if (!ParseNumber(fields[mb], memory)) {
      return LineError(name, number,
                       "AverageAllocatedMb: '" + std::string(fields[mb]) + "' is not a size in MB");
    }
    auto it = index.find({fields[owner], fields[app]});
    if (it == index.end()) continue;
    for (FunctionTrace* f : it->second) f->memory_mb = memory;
  }
  return Status::Ok();
}

}  // namespace thaw::sim
