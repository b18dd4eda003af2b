#include "pool/keep_alive.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace thaw::pool {

void IdleHistogram::Record(int64_t idle_us) {
  if (idle_us < 0) idle_us = 0;
  if (idle_us >= kBins * kBinUs) {
    ++out_of_bounds_;
  } else {
    ++bins_[idle_us / kBinUs];
    ++in_bounds_;
  }
  if (total() < kAgeAtSamples) return;
  in_bounds_ = 0;
  for (int64_t& count : bins_) {
    count /= 2;
    in_bounds_ += count;
  }
  out_of_bounds_ /= 2;
}

int IdleHistogram::PercentileBin(double pct) const {
  if (in_bounds_ == 0) return -1;
  // Nearest rank: the smallest bin whose cumulative count reaches ceil(pct% of the samples).
  int64_t rank = static_cast<int64_t>(std::ceil(pct / 100.0 * static_cast<double>(in_bounds_)));
  rank = std::clamp<int64_t>(rank, 1, in_bounds_);
  int64_t seen = 0;
  for (int i = 0; i < kBins; ++i) {
    seen += bins_[i];
    if (seen >= rank) return i;
  }
  return kBins - 1;
}

double IdleHistogram::BinCountCv() const {
  if (in_bounds_ == 0) return 0;
  const double mean = static_cast<double>(in_bounds_) / kBins;
  double sq = 0;
  for (int64_t count : bins_) {
    const double d = static_cast<double>(count) - mean;
    sq += d * d;
  }
  return std::sqrt(sq / kBins) / mean;
}

std::string IdleHistogram::Encode() const {
  std::string out;
  for (int i = 0; i < kBins; ++i) {
    if (bins_[i] == 0) continue;
    if (!out.empty()) out += ',';
    out += std::to_string(i) + ':' + std::to_string(bins_[i]);
  }
  return out + '|' + std::to_string(out_of_bounds_);
}

std::optional<IdleHistogram> IdleHistogram::Decode(std::string_view text) {
  auto number = [](std::string_view s, int64_t& v) {
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && end == s.data() + s.size() && v >= 0;
  };
  const size_t bar = text.rfind('|');
  if (bar == std::string_view::npos) return std::nullopt;
  IdleHistogram h;
  if (!number(text.substr(bar + 1), h.out_of_bounds_)) return std::nullopt;
  std::string_view bins = text.substr(0, bar);
  while (!bins.empty()) {
    const size_t comma = bins.find(',');
    const std::string_view entry = bins.substr(0, comma);
    const size_t colon = entry.find(':');
    int64_t bin = 0, count = 0;
    if (colon == std::string_view::npos || !number(entry.substr(0, colon), bin) ||
        !number(entry.substr(colon + 1), count) || bin >= kBins) {
      return std::nullopt;
    }
    h.bins_[bin] += count;
    h.in_bounds_ += count;
    if (comma == std::string_view::npos) break;
    bins.remove_prefix(comma + 1);
    if (bins.empty()) return std::nullopt;  // a trailing comma
  }
  return h;
}

const char* KeepAliveBasisName(KeepAliveBasis basis) {
  switch (basis) {
    case KeepAliveBasis::kFixed:
      return "fixed";
    case KeepAliveBasis::kTooFewSamples:
      return "too-few-samples";
    case KeepAliveBasis::kOutOfBounds:
      return "out-of-bounds";
    case KeepAliveBasis::kNotRepresentative:
      return "not-representative";
    case KeepAliveBasis::kHistogram:
      return "histogram";
  }
  return "?";
}

const char* WarmStateName(WarmState state) {
  switch (state) {
    case WarmState::kInstance:
      return "instance";
    case WarmState::kTemplate:
      return "template";
    case WarmState::kNothing:
      return "nothing";
  }
  return "?";
}

namespace {

KeepAliveBasis Judge(const KeepAliveSnapshot& s, const KeepAliveParams& p) {
  if (s.mode == KeepAliveMode::kFixed || s.idle == nullptr) return KeepAliveBasis::kFixed;
  const IdleHistogram& h = *s.idle;
  if (h.total() < p.min_samples) return KeepAliveBasis::kTooFewSamples;
  if (static_cast<double>(h.out_of_bounds()) >
      p.max_out_of_bounds * static_cast<double>(h.total())) {
    return KeepAliveBasis::kOutOfBounds;
  }
  if (h.BinCountCv() < p.min_cv) return KeepAliveBasis::kNotRepresentative;
  return KeepAliveBasis::kHistogram;
}

}  // namespace

KeepAlivePlan PlanKeepAlive(const KeepAliveSnapshot& s, const KeepAliveParams& p) {
  KeepAlivePlan plan;
  plan.basis = Judge(s, p);
  if (plan.basis == KeepAliveBasis::kHistogram) {
    // The head bin's lower edge, less the margin: load just before the earliest likely call.
    // The tail bin's upper edge, plus the margin: keep until the latest likely call.
    const int64_t head = s.idle->PercentileBin(p.head_pct) * IdleHistogram::kBinUs;
    const int64_t tail = (s.idle->PercentileBin(p.tail_pct) + 1) * IdleHistogram::kBinUs;
    plan.prewarm_us = head * (100 - p.margin_pct) / 100;
    const int64_t until = (tail * (100 + p.margin_pct) + 99) / 100;
    plan.keep_alive_us = until - plan.prewarm_us;
  } else {
    plan.prewarm_us = 0;
    plan.keep_alive_us = std::max<int64_t>(0, s.fixed_window_us);
  }
  plan.surplus_keep_us = plan.keep_alive_us;
  if (s.templates) {
    plan.surplus_keep_us = std::min(plan.keep_alive_us, p.template_surplus_keep_us);
    plan.template_until_us = plan.prewarm_us + plan.keep_alive_us;
    if (plan.basis == KeepAliveBasis::kFixed) plan.template_until_us = kKeepForever;
    if (plan.basis != KeepAliveBasis::kHistogram && plan.basis != KeepAliveBasis::kFixed) {
      plan.template_until_us = plan.keep_alive_us * p.template_fallback_factor;
    }
  }

  if (s.idle_since_us < 0) {  // a call is running (or none ever came): nothing to decide yet
    plan.state = WarmState::kInstance;
    return plan;
  }
  const int64_t age = std::max<int64_t>(0, s.now_us - s.idle_since_us);
  const int64_t warm_until = plan.prewarm_us + plan.keep_alive_us;
  if (age < plan.prewarm_us) {
    plan.state = WarmState::kNothing;  // the gap: not even the template
  } else if (age < warm_until) {
    plan.state = WarmState::kInstance;
    plan.prewarm_now = plan.prewarm_us > 0;
  } else {
    plan.state = age < plan.template_until_us ? WarmState::kTemplate : WarmState::kNothing;
  }
  return plan;
}

const char* TemplateActionName(TemplateAction action) {
  switch (action) {
    case TemplateAction::kKeep:
      return "keep";
    case TemplateAction::kDrop:
      return "drop";
    case TemplateAction::kMake:
      return "make";
  }
  return "?";
}

TemplateAction PlanTemplate(const KeepAlivePlan& plan, const TemplateSnapshot& t) {
  if (plan.state != WarmState::kNothing) {
    return t.dropped && !t.ready ? TemplateAction::kMake : TemplateAction::kKeep;
  }
  return t.ready && t.pool_empty ? TemplateAction::kDrop : TemplateAction::kKeep;
}

}  // namespace thaw::pool
