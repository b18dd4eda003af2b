// NodeRecord: what a node publishes about itself under /thaw/nodes/NAME in etcd (capacity,
// load, what it holds warm), and its JSON. Pure value type.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <set>
#include <string>

#include "common/status.h"
#include "dispatch/placement.h"

namespace thaw::cluster {

struct NodeRecord {
  std::string name;
  std::string advertise;  // host:port other nodes and clients reach its API at
  int64_t cores = 0;
  int64_t memory_mb = 0;       // node_memory_mb: what its instances may add up to
  int64_t free_memory_mb = 0;  // memory_mb less what live instances reserve
  int64_t gpus = 0;
  int64_t inflight = 0;             // calls running or queued
  std::set<std::string> warm;       // "function:version" with a ready instance
  std::set<std::string> templates;  // "function:version" with a ready template
  std::set<std::string> models;     // digests of the model trees on its disk
  bool draining = false;
  int64_t started_us = 0;  // wall clock, when the node joined

  bool operator==(const NodeRecord&) const = default;
};

boost::json::object NodeRecordObject(const NodeRecord& r);
std::string NodeRecordJson(const NodeRecord& r);  // NodeRecordObject's text
// InvalidArgument naming the field when `text` is not a node record.
StatusOr<NodeRecord> ParseNodeRecord(const std::string& text);
dispatch::NodeView ViewOf(const NodeRecord& r);

}  // namespace thaw::cluster
