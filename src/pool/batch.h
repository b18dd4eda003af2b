// Batches on the wire: the one event a batched function gets for several calls, and its answer
// split back into one result per call, with each call's share of what the batch used. Pure;
// any thread. The pool (pool.cc) assembles batches as dispatch/batch_assembly.h decides.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace thaw::pool {

// {"batch": [event, ...]}. An event that is not JSON (the native API passes bytes as they
// come) is sent as a JSON string of its bytes, so one caller cannot spoil the others' batch.
std::string BatchEvent(const std::vector<std::string_view>& events);

// The Lambda-Runtime-Client-Context of a batch: the callers' request ids, in the batch's
// order, at custom.batch_request_ids (Python: context.client_context.custom).
std::string BatchClientContext(const std::vector<std::string>& request_ids);

// One caller's item of a batch's answer.
struct BatchItem {
  bool failed = false;  // the item was {"error": ...}: this caller gets a function error
  std::string body;     // the item as JSON text; for a failed item, Lambda's error body
  std::string error_type;
  std::string error_message;
};

// Splits a batched handler's answer (a JSON list with one item per event, in order) into its
// items. An item that is an object with "error" as its only key fails that caller alone:
// {"error": "message"} or {"error": {"errorType": ..., "errorMessage": ...}}. Anything else
// (not a list, a list of another length) is InvalidArgument saying what was wrong: the whole
// batch failed.
StatusOr<std::vector<BatchItem>> SplitBatchAnswer(std::string_view body, size_t size);

// Item `index`'s share of `total` split evenly over `size` items: the integer quotient, and one
// more for each of the first (total % size) items, so the shares add up to `total` exactly.
int64_t EvenShare(int64_t total, int64_t size, int64_t index);

// The error type of a batch whose answer was not a list of the batch's size.
inline constexpr char kInvalidBatchAnswer[] = "Runtime.InvalidBatchResponse";
// The error type of an item {"error": "message"} that names none.
inline constexpr char kBatchItemError[] = "BatchItemError";

}  // namespace thaw::pool
