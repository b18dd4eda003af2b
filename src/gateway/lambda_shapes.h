// Lambda API shapes: the JSON requests AWS clients send (CreateFunction, UpdateFunctionCode,
// UpdateFunctionConfiguration, CreateAlias, ...) parsed into registry terms with errors that
// name the AWS field, the JSON they expect back (FunctionConfiguration, AliasConfiguration),
// function names and ARNs, and Invoke's log tail. Pure functions; thread-safe.
#pragma once

#include <boost/json/fwd.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "logs/log_store.h"
#include "queue/event_queue.h"
#include "registry/registry.h"

namespace thaw::gateway::lambda {

struct FunctionRef {
  std::string name;
  std::string qualifier;  // empty when the name carries none
  std::string account;    // from an ARN; empty when the name carries none
};

// NAME, NAME:QUALIFIER, ACCOUNT:function:NAME[:QUALIFIER] or
// arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER].
StatusOr<FunctionRef> ParseFunctionRef(const std::string& text);
// The qualifier to use given the name's and the ?Qualifier= parameter's: they must agree.
StatusOr<std::string> MergeQualifier(const FunctionRef& ref, const std::string& param);
// The ARN of internal function name `name` ("acme.hello" is "hello" in acme's account).
std::string FunctionArn(const std::string& region, const std::string& name,
                        const std::string& qualifier = "");

// Fields CreateFunction and UpdateFunctionConfiguration may set; absent ones stay as they are.
struct FunctionFields {
  std::optional<std::string> runtime;  // the Lambda name, e.g. python3.12
  std::optional<std::string> handler;
  std::optional<std::string> description;
  std::optional<int64_t> timeout_s;
  std::optional<int64_t> memory_mb;
  std::optional<int64_t> ephemeral_storage_mb;  // EphemeralStorage.Size
  std::optional<std::map<std::string, std::string>> environment;
};
StatusOr<FunctionFields> ParseFunctionFields(const boost::json::object& body);
// Applies `fields` to `m`, mapping the runtime onto thaw's and checking the handler fits it.
Status ApplyFunctionFields(const FunctionFields& fields, registry::Manifest& m);

struct CreateFunctionRequest {
  FunctionRef ref;  // name and account, no qualifier
  std::string zip;  // decoded Code.ZipFile
  FunctionFields fields;
  bool publish = false;
};
StatusOr<CreateFunctionRequest> ParseCreateFunction(const boost::json::object& body);

struct UpdateCodeRequest {
  std::string zip;
  bool publish = false;
};
StatusOr<UpdateCodeRequest> ParseUpdateCode(const boost::json::object& body);

// CreateAlias (`base` null: Name and FunctionVersion required) or UpdateAlias (fields absent
// from `body` keep `base`'s values).
StatusOr<registry::Alias> ParseAlias(const boost::json::object& body, const registry::Alias* base);
// "$LATEST" is 0.
StatusOr<int64_t> ParseFunctionVersion(const std::string& text, const std::string& field);
StatusOr<int64_t> ParseReservedConcurrency(const boost::json::object& body);
// Put/UpdateFunctionEventInvokeConfig's body applied over `base` (Put: nothing; Update: the
// stored config). `resolve` turns a DestinationConfig destination into its stored form (its
// error names the field).
using DestinationResolver = std::function<StatusOr<std::string>(const std::string&)>;
StatusOr<queue::InvokeConfig> ParseEventInvokeConfig(const boost::json::object& body,
                                                     const DestinationResolver& resolve,
                                                     queue::InvokeConfig base);
// Lambda's FunctionEventInvokeConfig for `arn`.
boost::json::object EventInvokeConfigJson(const std::string& region, const std::string& arn,
                                          const queue::InvokeConfig& config);
// PublishVersion's optional CodeSha256 (base64), as hex; empty when absent.
StatusOr<std::string> ParsePublishSha256(const boost::json::object& body);

// A request body as a JSON object; errors say what AWS says ("Could not parse request body
// into json").
StatusOr<boost::json::object> ParseJsonBody(const std::string& body);
// Whether `text` is one JSON value (Invoke checks payloads), without building a tree.
bool IsJson(std::string_view text);

// The version a qualifier (empty, $LATEST, a number or an alias) names in `f`, and the label
// Lambda shows for it ("$LATEST" or the number).
struct LabeledVersion {
  std::shared_ptr<const registry::Version> version;
  std::string label;
};
StatusOr<LabeledVersion> VersionFor(const registry::FunctionInfo& f, const std::string& qualifier);

// ListFunctions / ListVersionsByFunction paging over (function, version) entries, $LATEST
// counting as version 0; a marker names the first entry of the next page as NAME:VERSION.
struct Page {
  int64_t max_items = 50;
  std::string marker_name;
  int64_t marker_version = -1;  // -1: from the start
};
// The raw MaxItems and Marker parameters (empty when absent).
StatusOr<Page> ParsePage(const std::string& max_items, const std::string& marker);
// {key: [FunctionConfiguration...], "NextMarker"} for $LATEST of each function, and its
// published versions when `published_too`.
boost::json::object ListPage(const std::vector<registry::FunctionInfo>& functions,
                             bool published_too, const Page& page, const char* key,
                             const std::string& region);

// FunctionConfiguration of version `v` of `f`, as `label` ("$LATEST" or a number).
boost::json::object FunctionConfiguration(const registry::FunctionInfo& f,
                                          const registry::Version& v, const std::string& label,
                                          const std::string& region);
boost::json::object AliasConfiguration(const std::string& region, const std::string& function,
                                       const registry::Alias& alias);
// "2024-05-01T12:00:00.000+0000", as Lambda's LastModified.
std::string LambdaTimestamp(int64_t wall_us);
// Lambda's CodeSha256: base64 of the digest whose hex is `sha256_hex`.
std::string CodeSha256(const std::string& sha256_hex);
// The last `max_bytes` of a request's log lines, newline-terminated, cut at a UTF-8 boundary.
std::string LogTail(const std::vector<logs::Line>& lines, size_t max_bytes);

}  // namespace thaw::gateway::lambda
