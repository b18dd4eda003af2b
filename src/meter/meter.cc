#include "meter/meter.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "common/files.h"
#include "common/shard.h"
#include "common/tenant.h"
#include "store/db.h"

namespace thaw::meter {
namespace {
constexpr auto kBatchInterval = std::chrono::milliseconds(100);
constexpr size_t kBatchSize = 512;
// A segment is sealed (and deleted once its records commit) when it reaches this size, not at
// every batch: under load the writer commits back to back, and a file per batch would cost an
// open, close and unlink each time. After a kill, replay re-reads at most about this much of
// already committed records (ignored by the primary key).
constexpr int64_t kSegmentBytes = 256 << 10;
// A segment's blocks reserved and mapped when it is made: lines are appended by copying them
// into the mapping (the page cache, which outlives a kill -9 as a write(2)'s bytes do), with no
// system call on the shard. Four times kSegmentBytes: the writer seals a segment at its next
// pass after it passes kSegmentBytes; a line past the mapping is written with pwrite.
constexpr int64_t kMapBytes = 4 * kSegmentBytes;
// The writer's SQLite page cache, in KiB (it grows to this only as the ledger does).
constexpr int64_t kCacheKib = 32 << 10;

// The first field of every journal line: a line from another format version is refused
// rather than misread.
constexpr std::string_view kLineTag = "m1";
constexpr size_t kLineFields = 22;  // the tag and the record's 21 fields
// Lines journaled before batch sizes existed: the same fields without the last one.
constexpr size_t kLineFieldsWithoutBatch = 21;
// Lines journaled before token counts existed: without the last three.
constexpr size_t kLineFieldsWithoutTokens = 19;
constexpr std::string_view kSegmentSuffix = ".jnl";
constexpr size_t kSeqDigits = 20;  // zero-padded, so names sort as numbers do
constexpr const char* kLockName = "lock";

void AppendEscaped(std::string& out, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\0':  // a NUL in a line marks it torn (see ReplayJournal)
        out += "\\0";
        break;
      default:
        out += c;
    }
  }
}

void AppendInt(std::string& out, int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, end);
}

bool Unescape(std::string_view in, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '\\') {
      out += in[i];
      continue;
    }
    if (++i == in.size()) return false;
    switch (in[i]) {
      case '\\':
        out += '\\';
        break;
      case 't':
        out += '\t';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case '0':
        out += '\0';
        break;
      default:
        return false;
    }
  }
  return true;
}

bool ParseInt(std::string_view in, int64_t& out) {
  if (in.empty()) return false;
  auto [end, ec] = std::from_chars(in.data(), in.data() + in.size(), out);
  return ec == std::errc() && end == in.data() + in.size();
}

std::string SegmentPath(const std::string& dir, uint64_t seq) {
  char name[kSeqDigits + 1];
  std::snprintf(name, sizeof(name), "%020llu", static_cast<unsigned long long>(seq));
  return dir + "/" + name + std::string(kSegmentSuffix);
}

std::optional<uint64_t> SegmentSeq(std::string_view name) {
  if (name.size() != kSeqDigits + kSegmentSuffix.size() ||
      name.substr(kSeqDigits) != kSegmentSuffix) {
    return std::nullopt;
  }
  uint64_t seq = 0;
  auto [end, ec] = std::from_chars(name.data(), name.data() + kSeqDigits, seq);
  if (ec != std::errc() || end != name.data() + kSeqDigits) return std::nullopt;
  return seq;
}

StatusOr<int> CreateSegment(const std::string& dir, uint64_t seq) {
  const std::string path = SegmentPath(dir, seq);
  // O_EXCL: a segment number is never reused, so an existing file would be a bug. O_RDWR: a
  // shared writable mapping needs it.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus("create", path, errno);
  return fd;
}

// Reserves a new (empty) segment's first kMapBytes and maps them; nullptr where the file system
// cannot (the slot then writes with pwrite). Reserved blocks read as zeros, and fallocate
// rather than a sparse file: a full disk then fails here, not as a SIGBUS at a shard's copy.
char* MapSegment(int fd) {
  if (::fallocate(fd, 0, 0, kMapBytes) != 0) return nullptr;
  void* p = ::mmap(nullptr, kMapBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    (void)::ftruncate(fd, 0);
    return nullptr;
  }
  return static_cast<char*>(p);
}

// Unmaps and closes a segment; `trim_to` >= 0 first cuts its file to that length (the reserved
// zeros past its lines).
void CloseSegment(int fd, char* map, int64_t trim_to) {
  if (map != nullptr) ::munmap(map, kMapBytes);
  if (trim_to >= 0) (void)::ftruncate(fd, trim_to);
  ::close(fd);
}

// ON CONFLICT DO NOTHING: a record already in the ledger (a replayed journal, a retried batch)
// keeps its first row. A usage record sets the tokens of its invocation's row (an idempotent
// UPDATE).
//
// Invocations go in kRowsPerInsert at a time (then the rest in smaller steps), each size one
// statement the connection keeps prepared: one statement per record cost the writer thread more
// in statement overhead (step, reset, bindings) than in the rows themselves.
constexpr size_t kColumns = 22;
constexpr std::array<size_t, 3> kInsertSizes = {64, 8, 1};  // largest first; ends with 1

const std::string& InsertSql(size_t rows) {
  static const std::array<std::string, kInsertSizes.size()> texts = [] {
    std::array<std::string, kInsertSizes.size()> out;
    for (size_t k = 0; k < kInsertSizes.size(); ++k) {
      std::string& sql = out[k];
      sql =
          "INSERT INTO invocations (request_id, function, version, start_us, end_us, "
          "duration_us, billed_ms, memory_mb, max_memory_used_mb, cold_start, init_us, status, "
          "error_type, bytes_in, bytes_out, cpu_us, tenant, gpu_us, prompt_tokens, "
          "completion_tokens, batch_size, start_kind) VALUES ";
      for (size_t r = 0; r < kInsertSizes[k]; ++r) {
        sql += r == 0 ? "(" : ",(";
        for (size_t c = 0; c < kColumns; ++c) sql += c == 0 ? "?" : ",?";
        sql += ')';
      }
      sql += " ON CONFLICT DO NOTHING";
    }
    return out;
  }();
  for (size_t k = 0; k < kInsertSizes.size(); ++k) {
    if (kInsertSizes[k] == rows) return texts[k];
  }
  std::abort();  // only kInsertSizes are asked for
}

std::string_view StartKindColumn(const Record& r) {
  return !r.cold_start ? "" : r.forked ? "fork" : r.restored ? "restore" : "full";
}

// Binds `r` as row `row` (0-based) of a multi-row INSERT; its strings by reference (not copied:
// `r` outlives the statement's run, whose handle resets it).
void BindRow(store::Stmt& stmt, size_t row, const Record& r) {
  const int b = static_cast<int>(row * kColumns);
  stmt.BindRef(b + 1, r.request_id)
      .BindRef(b + 2, r.function)
      .BindRef(b + 3, r.version)
      .Bind(b + 4, r.start_us)
      .Bind(b + 5, r.end_us)
      .Bind(b + 6, r.duration_us)
      .Bind(b + 7, r.billed_ms)
      .Bind(b + 8, r.memory_mb)
      .Bind(b + 9, r.max_memory_used_mb)
      .Bind(b + 10, int64_t{r.cold_start})
      .Bind(b + 11, r.init_us)
      .BindRef(b + 12, r.status)
      .BindRef(b + 13, r.error_type)
      .Bind(b + 14, r.bytes_in)
      .Bind(b + 15, r.bytes_out)
      .Bind(b + 16, r.cpu_us)
      .BindRef(b + 17, r.tenant)
      .Bind(b + 18, r.gpu_us)
      .Bind(b + 19, r.prompt_tokens)
      .Bind(b + 20, r.completion_tokens)
      .Bind(b + 21, r.batch_size)
      .BindRef(b + 22, StartKindColumn(r));
}

// The invocations of `batch` (not its usage records), in multi-row statements.
Status InsertInvocations(store::Db& db, const std::vector<Record>& batch) {
  size_t next = 0;  // the first record not yet inserted (or skipped)
  auto skip_usage = [&] {
    while (next < batch.size() && batch[next].status == kUsageStatus) ++next;
  };
  skip_usage();
  size_t left = 0;
  for (const Record& r : batch) left += r.status != kUsageStatus ? 1 : 0;
  for (size_t rows : kInsertSizes) {
    while (left >= rows) {
      auto stmt = db.PrepareCached(InsertSql(rows));
      if (!stmt.ok()) return stmt.status();
      for (size_t row = 0; row < rows; ++row) {
        BindRow(**stmt, row, batch[next++]);
        skip_usage();
      }
      THAW_RETURN_IF_ERROR((*stmt)->Run());
      left -= rows;
    }
  }
  return Status::Ok();
}

Status InsertRecords(store::Db& db, const std::vector<Record>& batch) {
  THAW_RETURN_IF_ERROR(db.Begin());
  Status st = InsertInvocations(db, batch);
  // Usage records after every invocation: a batch (or a replay) gathers several shards'
  // buffers or segments, so a usage record may come before its invocation's there.
  for (size_t i = 0; st.ok() && i < batch.size(); ++i) {
    const Record& r = batch[i];
    if (r.status != kUsageStatus) continue;
    auto usage = db.PrepareCached(
        "UPDATE invocations SET prompt_tokens = ?2, completion_tokens = ?3 WHERE request_id = ?1");
    if (!usage.ok()) {
      st = usage.status();
      break;
    }
    (*usage)->Bind(1, r.request_id).Bind(2, r.prompt_tokens).Bind(3, r.completion_tokens);
    st = (*usage)->Run();
  }
  if (!st.ok()) {
    (void)db.Exec("ROLLBACK");
    return st;
  }
  return db.Exec("COMMIT");
}

// Commits every segment a previous process left in `dir` to the ledger in one transaction (each
// shard wrote segments of its own, and a usage record may sit in another segment than its
// invocation) and deletes them. Returns the number the next segment should take.
StatusOr<uint64_t> ReplayJournal(store::Db& db, const std::string& dir) {
  std::vector<uint64_t> seqs;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ErrnoStatus("open", dir, errno);
  while (dirent* e = ::readdir(d)) {
    if (auto seq = SegmentSeq(e->d_name)) seqs.push_back(*seq);
  }
  ::closedir(d);
  std::sort(seqs.begin(), seqs.end());
  std::vector<Record> records;
  for (uint64_t seq : seqs) {
    const std::string path = SegmentPath(dir, seq);
    auto data = ReadFile(path);
    if (!data.ok()) return data.status();
    const size_t before = records.size();
    size_t malformed = 0;
    std::string_view rest = *data;
    // A mapped segment's reserved blocks past its lines read as zeros.
    rest = rest.substr(0, rest.find_last_not_of('\0') + 1);
    // A last line without its '\n', or a line with a NUL (bytes a copy into the mapping had not
    // stored yet: lines never hold one), is a write the kill cut short: its Add() or Sync()
    // never returned, so its response was never sent and it is not billed.
    size_t torn = !rest.empty() && rest.back() != '\n' ? 1 : 0;
    for (size_t nl; (nl = rest.find('\n')) != std::string_view::npos; rest.remove_prefix(nl + 1)) {
      Record r;
      const std::string_view line = rest.substr(0, nl);
      if (line.find('\0') != std::string_view::npos) {
        ++torn;
      } else if (DecodeJournalLine(line, r)) {
        records.push_back(std::move(r));
      } else {
        ++malformed;
      }
    }
    if (records.size() > before || torn > 0 || malformed > 0) {
      spdlog::info("meter: replaying {} records from {}{}{}", records.size() - before, path,
                   torn > 0 ? fmt::format(", skipped {} torn lines", torn) : "",
                   malformed > 0 ? fmt::format(", skipped {} malformed lines", malformed) : "");
    }
  }
  if (Status st = InsertRecords(db, records); !st.ok()) {
    return Status(st.code(), "failed to replay meter journal " + dir + ": " + st.message());
  }
  for (uint64_t seq : seqs) {
    const std::string path = SegmentPath(dir, seq);
    if (::unlink(path.c_str()) != 0) return ErrnoStatus("remove", path, errno);
  }
  return seqs.empty() ? uint64_t{1} : seqs.back() + 1;
}

}  // namespace

int64_t BilledMillis(int64_t duration_us) {
  if (duration_us <= 0) return 1;
  return (duration_us + 999) / 1000;
}

// The journal's cold_start column: 0 warm, 1 a full cold start, 2 a forked one, 3 a restored one.
int64_t ColdStartField(const Record& r) {
  return !r.cold_start ? 0 : r.forked ? 2 : r.restored ? 3 : 1;
}

void EncodeJournalLine(const Record& r, std::string& out) {
  out.clear();
  out.append(kLineTag);
  for (const std::string* s :
       {&r.request_id, &r.function, &r.version, &r.tenant, &r.status, &r.error_type}) {
    out += '\t';
    AppendEscaped(out, *s);
  }
  for (int64_t v : {r.start_us, r.end_us, r.duration_us, r.billed_ms, r.memory_mb,
                    r.max_memory_used_mb, r.cpu_us, ColdStartField(r), r.init_us, r.bytes_in,
                    r.bytes_out, r.gpu_us, r.prompt_tokens, r.completion_tokens, r.batch_size}) {
    out += '\t';
    AppendInt(out, v);
  }
  out += '\n';
}

bool DecodeJournalLine(std::string_view line, Record& out) {
  std::string_view fields[kLineFields];
  size_t n = 0;
  for (;;) {
    const size_t tab = line.find('\t');
    if (n == kLineFields) return false;
    fields[n++] = line.substr(0, tab);
    if (tab == std::string_view::npos) break;
    line.remove_prefix(tab + 1);
  }
  if ((n != kLineFields && n != kLineFieldsWithoutBatch && n != kLineFieldsWithoutTokens) ||
      fields[0] != kLineTag) {
    return false;
  }
  std::string* strings[] = {&out.request_id, &out.function, &out.version,
                            &out.tenant,     &out.status,   &out.error_type};
  for (size_t i = 0; i < std::size(strings); ++i) {
    if (!Unescape(fields[1 + i], *strings[i])) return false;
  }
  int64_t cold_start = 0;
  int64_t* ints[] = {&out.start_us,      &out.end_us,
                     &out.duration_us,   &out.billed_ms,
                     &out.memory_mb,     &out.max_memory_used_mb,
                     &out.cpu_us,        &cold_start,
                     &out.init_us,       &out.bytes_in,
                     &out.bytes_out,     &out.gpu_us,
                     &out.prompt_tokens, &out.completion_tokens,
                     &out.batch_size};
  const size_t present = n - 1 - std::size(strings);
  for (size_t i = 0; i < present; ++i) {
    if (!ParseInt(fields[1 + std::size(strings) + i], *ints[i])) return false;
  }
  if (cold_start < 0 || cold_start > 3) return false;
  out.cold_start = cold_start != 0;
  out.forked = cold_start == 2;
  out.restored = cold_start == 3;
  return !out.request_id.empty();
}

std::string Meter::JournalDir(const std::string& db_path) { return db_path + ".meter-journal"; }

Meter::Meter(std::unique_ptr<store::Db> db, std::string journal_dir, int lock_fd, int segment_fd,
             uint64_t segment_seq)
    : db_(std::move(db)),
      journal_dir_(std::move(journal_dir)),
      lock_fd_(lock_fd),
      next_seq_(segment_seq + 1) {
  // The shared slot's segment exists from the start (a shard's is made at its first write).
  slots_[kSharedSlot].fd = segment_fd;
  slots_[kSharedSlot].map = MapSegment(segment_fd);
  slots_[kSharedSlot].seq = segment_seq;
  writer_ = std::thread([this] { Run(); });
}

StatusOr<std::unique_ptr<Meter>> Meter::Open(const std::string& db_path) {
  return Open(db_path, JournalDir(db_path));
}

StatusOr<std::unique_ptr<Meter>> Meter::Open(const std::string& store,
                                             const std::string& journal_dir) {
  auto db = store::Db::Open(store);
  if (!db.ok()) return db.status();
  if ((*db)->dialect() == store::Dialect::kSqlite) {
    // The ledger's request-id index takes each batch's rows at random places: with SQLite's
    // default 2 MB page cache, every few thousand rows in the ledger cost the writer a page
    // read per row. A cache this size holds the indexes of a few hundred thousand rows.
    THAW_RETURN_IF_ERROR((*db)->Exec("PRAGMA cache_size = -" + std::to_string(kCacheKib)));
  }
  std::string dir = journal_dir;
  THAW_RETURN_IF_ERROR(MakeDirs(dir, 0700));
  // Two meters on one journal would replay and delete each other's live segments.
  const std::string lock_path = dir + "/" + kLockName;
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) return ErrnoStatus("open", lock_path, errno);
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(lock_fd);
    if (err == EWOULDBLOCK) {
      return FailedPrecondition("failed to lock " + lock_path +
                                ": another process is metering into " + dir);
    }
    return ErrnoStatus("lock", lock_path, err);
  }
  auto next = ReplayJournal(**db, dir);
  if (!next.ok()) {
    ::close(lock_fd);
    return next.status();
  }
  auto fd = CreateSegment(dir, *next);
  if (!fd.ok()) {
    ::close(lock_fd);
    return fd.status();
  }
  return std::unique_ptr<Meter>(new Meter(std::move(*db), std::move(dir), lock_fd, *fd, *next));
}

Meter::~Meter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  writer_.join();
  ::close(lock_fd_);
}

void Meter::SetObserver(Observer observer) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!observer) {
    observer_.store(nullptr, std::memory_order_release);
    return;
  }
  observers_.push_back(std::make_unique<Observer>(std::move(observer)));
  observer_.store(observers_.back().get(), std::memory_order_release);
}

int Meter::SlotOfThisThread() {
  const int shard = CurrentShard();
  return shard >= 0 && shard < kMaxShards ? shard : kSharedSlot;
}

void Meter::Add(Record record) {
  if (record.tenant.empty()) record.tenant = TenantOfFunction(record.function);
  if (const Observer* observer = observer_.load(std::memory_order_acquire)) (*observer)(record);
  (void)Enqueue(SlotOfThisThread(), std::move(record), /*journal_now=*/true);
}

StageTicket Meter::Stage(Record record) {
  if (record.tenant.empty()) record.tenant = TenantOfFunction(record.function);
  if (const Observer* observer = observer_.load(std::memory_order_acquire)) (*observer)(record);
  return Enqueue(SlotOfThisThread(), std::move(record), /*journal_now=*/false);
}

void Meter::Sync(StageTicket ticket) {
  if (ticket.slot < 0 || ticket.slot >= kSlots) return;
  Slot& slot = slots_[ticket.slot];
  // The ticket's record was counted in added before Stage returned; journaled passes it only
  // after its line is written.
  if (slot.journaled.load(std::memory_order_acquire) >= ticket.seq) return;
  std::lock_guard<std::mutex> lock(slot.mu);
  SyncSlotLocked(slot);
}

void Meter::Sync() {
  for (int i = 0; i < kSlots; ++i) {
    Sync(StageTicket{i, slots_[i].added_mark.load(std::memory_order_acquire)});
  }
}

void Meter::AddUsage(const std::string& request_id, const std::string& function, int64_t at_us,
                     int64_t prompt_tokens, int64_t completion_tokens) {
  Record record;
  record.request_id = request_id;
  record.function = function;
  record.start_us = at_us;
  record.status = kUsageStatus;
  record.prompt_tokens = prompt_tokens;
  record.completion_tokens = completion_tokens;
  Add(std::move(record));
}

StageTicket Meter::Enqueue(int index, Record record, bool journal_now) {
  // Encoded outside the lock, into a buffer each thread reuses: no allocation once warm.
  thread_local std::string line;
  EncodeJournalLine(record, line);
  Slot& slot = slots_[index];
  uint64_t seq;
  bool full;
  {
    std::lock_guard<std::mutex> lock(slot.mu);
    slot.staged += line;
    slot.records.push_back(std::move(record));
    seq = ++slot.added;
    slot.added_mark.store(seq, std::memory_order_release);
    if (journal_now) SyncSlotLocked(slot);
    full = slot.records.size() == kBatchSize;
  }
  if (full) WakeWriter();
  return StageTicket{index, seq};
}

void Meter::WakeWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_ = true;
  }
  cv_.notify_one();
}

void Meter::SyncSlotLocked(Slot& slot) {
  if (!slot.staged.empty()) {
    WriteLocked(slot, slot.staged);
    slot.staged.clear();
  }
  slot.journaled.store(slot.added, std::memory_order_release);
}

void Meter::WriteLocked(Slot& slot, const std::string& lines) {
  if (slot.fd < 0) {
    // A shard's first write makes its segment: one open(2) per shard for the process's life
    // (and after each of its segments fills, made by the writer thread, off the shard).
    const uint64_t seq = next_seq_.fetch_add(1, std::memory_order_relaxed);
    StatusOr<int> fd = CreateSegment(journal_dir_, seq);
    if (!fd.ok()) {
      if (!slot.failing) {
        slot.failing = true;
        spdlog::error("meter: {} (records are not crash-safe until it works again)",
                      fd.status().message());
      }
      return;
    }
    slot.fd = *fd;
    slot.map = MapSegment(*fd);
    slot.seq = seq;
    slot.bytes = 0;
  }
  int err = 0;
  if (slot.map != nullptr && slot.bytes + static_cast<int64_t>(lines.size()) <= kMapBytes) {
    std::memcpy(slot.map + slot.bytes, lines.data(), lines.size());
  } else {
    // pwrite at the end of the last whole line rather than an O_APPEND write: if a write fails
    // half-way (a full disk), the next line overwrites the fragment instead of following it, so
    // only a segment's tail can ever be a partial line.
    size_t done = 0;
    while (done < lines.size()) {
      ssize_t n = ::pwrite(slot.fd, lines.data() + done, lines.size() - done,
                           static_cast<off_t>(slot.bytes + static_cast<int64_t>(done)));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        err = n < 0 ? errno : EIO;
        break;
      }
      done += static_cast<size_t>(n);
    }
  }
  if (err == 0) {
    slot.bytes += static_cast<int64_t>(lines.size());
    if (slot.failing) {
      slot.failing = false;
      spdlog::info("meter: journal writes work again");
    }
    return;
  }
  // The records are still queued and committed as usual; only a crash before that loses them.
  if (!slot.failing) {
    slot.failing = true;
    spdlog::error(
        "failed to write meter journal {}: {} (records are not crash-safe until "
        "it works again)",
        SegmentPath(journal_dir_, slot.seq), std::strerror(err));
  }
}

int64_t Meter::pending() const {
  int64_t n = in_writer_.load(std::memory_order_acquire);
  for (const Slot& slot : slots_) {
    std::lock_guard<std::mutex> lock(slot.mu);
    n += static_cast<int64_t>(slot.records.size());
  }
  return n;
}

Status Meter::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  // A pass that starts after this call takes every record staged or added before it.
  const uint64_t target = passes_started_ + 1;
  flush_wanted_ = std::max(flush_wanted_, target);
  cv_.notify_one();
  flushed_cv_.wait(lock, [&] { return passes_done_ >= target; });
  return last_status_;
}

std::vector<Meter::OpenSegment> Meter::TakeAll(std::vector<Record>& batch, bool& rotation_failing) {
  // A full segment's successor is made first, outside the slots' locks: open(2), fallocate and
  // mmap stay off the shards' path.
  std::array<OpenSegment, kSlots> fresh{};
  std::array<uint64_t, kSlots> fresh_seq{};
  for (int i = 0; i < kSlots; ++i) {
    bool full;
    {
      std::lock_guard<std::mutex> lock(slots_[i].mu);
      full = slots_[i].fd >= 0 && slots_[i].bytes >= kSegmentBytes;
    }
    if (!full) continue;
    const uint64_t seq = next_seq_.fetch_add(1, std::memory_order_relaxed);
    StatusOr<int> fd = CreateSegment(journal_dir_, seq);
    if (!fd.ok()) {
      // The slot keeps appending to its segment, which is deleted after a later rotation or a
      // clean stop (or replayed at the next start: the primary key makes that harmless).
      if (!rotation_failing) spdlog::warn("meter: {}", fd.status().message());
      rotation_failing = true;
      continue;
    }
    rotation_failing = false;
    fresh[i] = OpenSegment{*fd, MapSegment(*fd)};
    fresh_seq[i] = seq;
  }
  // Every slot locked at once: a record staged before another (a call's record before its usage
  // record, on another shard) is never left behind while the later one is taken.
  std::array<std::unique_lock<std::mutex>, kSlots> locks;
  for (int i = 0; i < kSlots; ++i) locks[i] = std::unique_lock<std::mutex>(slots_[i].mu);
  size_t taken = batch.size();
  for (const Slot& slot : slots_) taken += slot.records.size();
  batch.reserve(taken);  // records are moved once, not again at each growth
  std::vector<OpenSegment> sealed;
  for (int i = 0; i < kSlots; ++i) {
    Slot& slot = slots_[i];
    // Lines still staged are journaled with the batch that takes their records: a staged record
    // nobody Syncs is crash-safe within one pass, and a sealed segment holds only lines of this
    // batch or of committed records.
    SyncSlotLocked(slot);
    if (fresh[i].fd >= 0) {
      sealed.push_back(OpenSegment{slot.fd, slot.map});
      sealed_.push_back(slot.seq);
      slot.fd = fresh[i].fd;
      slot.map = fresh[i].map;
      slot.seq = fresh_seq[i];
      slot.bytes = 0;
    }
    if (slot.records.empty()) continue;
    // Moved, not swapped: the slot keeps its capacity, so its shard does not grow it again
    // (moving every record it holds at each doubling) after every pass.
    batch.insert(batch.end(), std::make_move_iterator(slot.records.begin()),
                 std::make_move_iterator(slot.records.end()));
    slot.records.clear();
  }
  return sealed;
}

void Meter::Run() {
  bool rotation_failing = false;  // to log a failing rotation once, not every pass
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    // Batches of up to kBatchInterval or kBatchSize records, or sooner for a waiting Flush:
    // one SQLite transaction per record would cost more than the rest of a warm call.
    cv_.wait_for(lock, kBatchInterval,
                 [&] { return stop_ || wake_ || flush_wanted_ > passes_started_; });
    wake_ = false;
    const bool stopping = stop_;
    const uint64_t pass = ++passes_started_;
    lock.unlock();
    std::vector<Record> batch;
    batch.swap(retry_);
    // Sealed segments are deleted once committed: their reserved zeros are not trimmed.
    for (const OpenSegment& seg : TakeAll(batch, rotation_failing)) {
      CloseSegment(seg.fd, seg.map, /*trim_to=*/-1);
    }
    in_writer_.store(static_cast<int64_t>(batch.size()), std::memory_order_release);
    Status st;
    if (!batch.empty()) {
      std::lock_guard<std::mutex> db_lock(db_mu_);
      st = InsertRecords(*db_, batch);
    }
    if (st.ok()) {
      for (uint64_t seq : sealed_) {
        const std::string path = SegmentPath(journal_dir_, seq);
        // Harmless if it fails: the next start replays it into rows that already exist.
        if (::unlink(path.c_str()) != 0) {
          spdlog::warn("failed to remove {}: {}", path, std::strerror(errno));
        }
      }
      sealed_.clear();
      in_writer_.store(0, std::memory_order_release);
    } else {
      // Kept for the next pass (the key makes a retry safe).
      retry_ = std::move(batch);
    }
    lock.lock();
    last_status_ = st;
    passes_done_ = pass;
    flushed_cv_.notify_all();
    if (stopping) break;
  }
  // A clean stop with everything committed leaves no journal; otherwise the next Open replays
  // what is left.
  const bool all_committed = retry_.empty() && sealed_.empty();
  for (Slot& slot : slots_) {
    std::lock_guard<std::mutex> slot_lock(slot.mu);
    if (slot.fd < 0) continue;
    // A segment the next start replays keeps only its lines.
    CloseSegment(slot.fd, slot.map, all_committed ? -1 : slot.bytes);
    slot.fd = -1;
    slot.map = nullptr;
    if (all_committed) (void)::unlink(SegmentPath(journal_dir_, slot.seq).c_str());
  }
}

StatusOr<std::vector<Sample>> Meter::Samples(const std::string& function, int64_t from_us,
                                             int64_t to_us, const std::string& tenant) {
  THAW_RETURN_IF_ERROR(Flush());
  std::lock_guard<std::mutex> lock(db_mu_);
  auto stmt = db_->Prepare(
      "SELECT function, start_us, duration_us, billed_ms, memory_mb, max_memory_used_mb, cpu_us, "
      "cold_start, status, tenant, gpu_us, prompt_tokens, completion_tokens, batch_size, "
      "start_kind "
      "FROM invocations "
      "WHERE (?1 = '' OR function = ?1) AND start_us >= ?2 AND start_us < ?3 "
      "AND (?4 = '' OR tenant = ?4)");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, function).Bind(2, from_us).Bind(3, to_us).Bind(4, tenant);
  std::vector<Sample> out;
  for (;;) {
    auto row = stmt->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    Sample s;
    s.function = stmt->Text(0);
    s.start_us = stmt->Int(1);
    s.duration_us = stmt->Int(2);
    s.billed_ms = stmt->Int(3);
    s.memory_mb = stmt->Int(4);
    s.max_memory_used_mb = stmt->Int(5);
    s.cpu_us = stmt->Int(6);
    s.cold_start = stmt->Int(7) != 0;
    s.status = stmt->Text(8);
    s.tenant = stmt->Text(9);
    s.gpu_us = stmt->Int(10);
    s.prompt_tokens = stmt->Int(11);
    s.completion_tokens = stmt->Int(12);
    s.batch_size = stmt->Int(13);
    s.forked = stmt->Text(14) == "fork";
    s.restored = stmt->Text(14) == "restore";
    out.push_back(std::move(s));
  }
  return out;
}

namespace {

// What AddSample counts as an invocation, and the rows billed like one (init errors).
constexpr const char* kInvocation = "status NOT IN ('gpu_idle', 'template_init', 'init_error')";
constexpr const char* kBilledRun = "status NOT IN ('gpu_idle', 'template_init')";

std::string SumIf(const std::string& cond, const std::string& value) {
  return "SUM(CASE WHEN " + cond + " THEN " + value + " ELSE 0 END)";
}

std::string TotalsSql(GroupBy by) {
  std::string key;
  switch (by) {
    case GroupBy::kFunction:
      key = "function";
      break;
    case GroupBy::kTenant:
      key = "tenant";
      break;
    case GroupBy::kDay:
      key = "CAST(start_us / 86400000000 AS TEXT)";
      break;
    case GroupBy::kAll:
      key = "''";
      break;
  }
  const std::string inv = kInvocation;
  const std::string run = kBilledRun;
  return "WITH f AS (SELECT " + key +
         " AS k, status, cold_start, start_kind, billed_ms, memory_mb, cpu_us, gpu_us, "
         "duration_us, max_memory_used_mb, prompt_tokens, completion_tokens, batch_size "
         "FROM invocations WHERE (?1 = '' OR function = ?1) AND (?2 = '' OR tenant = ?2) "
         "AND start_us >= ?3 AND start_us < ?4), "
         "p AS (SELECT k, duration_us, ROW_NUMBER() OVER (PARTITION BY k ORDER BY duration_us) "
         "AS rn, COUNT(*) OVER (PARTITION BY k) AS n FROM f WHERE " +
         inv +
         "), "
         "q AS (SELECT k, MAX(CASE WHEN rn = (50 * n + 99) / 100 THEN duration_us END) AS p50, "
         "MAX(CASE WHEN rn = (99 * n + 99) / 100 THEN duration_us END) AS p99 FROM p GROUP BY k), "
         "s AS (SELECT k, " +
         SumIf(inv, "1") + " AS invocations, " + SumIf("status = 'success'", "1") + ", " +
         SumIf("status = 'error'", "1") + ", " + SumIf("status = 'timeout'", "1") + ", " +
         SumIf("status = 'crash'", "1") + ", " + SumIf("status = 'throttled'", "1") + ", " +
         SumIf("status = 'init_error'", "1") + ", " + SumIf(inv + " AND cold_start != 0", "1") +
         ", " + SumIf(inv + " AND cold_start != 0 AND start_kind = 'fork'", "1") + ", " +
         SumIf(inv + " AND cold_start != 0 AND start_kind = 'restore'", "1") + ", " +
         SumIf("status = 'template_init'", "1") + ", " +
         SumIf("status = 'template_init'", "billed_ms * memory_mb") + ", " +
         SumIf(run, "billed_ms") + ", " + SumIf(run, "billed_ms * memory_mb") + ", " +
         SumIf(run, "cpu_us") + ", " +
         SumIf("status NOT IN ('template_init', 'init_error')", "gpu_us") + ", " +
         SumIf("status = 'gpu_idle'", "gpu_us") + ", " +
         SumIf(inv, "duration_us * max_memory_used_mb") + ", " + SumIf(inv, "duration_us") + ", " +
         SumIf(inv, "prompt_tokens") + ", " + SumIf(inv, "completion_tokens") + ", " +
         SumIf(inv + " AND batch_size > 0", "1") + ", " +
         SumIf(inv + " AND batch_size > 0", "1.0 / batch_size") +
         ", MAX(memory_mb) FROM f GROUP BY k) "
         "SELECT s.*, q.p50, q.p99 FROM s LEFT JOIN q ON q.k = s.k ORDER BY s.k";
}

}  // namespace

StatusOr<std::vector<Group>> Meter::Totals(GroupBy by, const std::string& function,
                                           const std::string& tenant, int64_t from_us,
                                           int64_t to_us) {
  THAW_RETURN_IF_ERROR(Flush());
  std::lock_guard<std::mutex> lock(db_mu_);
  auto stmt = db_->Prepare(TotalsSql(by));
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, function).Bind(2, tenant).Bind(3, from_us).Bind(4, to_us);
  std::vector<Group> out;
  for (;;) {
    auto row = stmt->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    Group g;
    g.key = stmt->Text(0);
    if (by == GroupBy::kDay) g.key = UtcDay(std::stoll(g.key) * 86'400'000'000);
    Sums& m = g.sums;
    int col = 1;
    for (int64_t* field : {&m.invocations,    &m.success,        &m.error,
                           &m.timeout,        &m.crash,          &m.throttled,
                           &m.init_failures,  &m.cold_starts,    &m.fork_starts,
                           &m.restore_starts, &m.template_inits, &m.init_mb_ms,
                           &m.billed_ms,      &m.billed_mb_ms,   &m.cpu_us,
                           &m.gpu_us,         &m.gpu_idle_us,    &m.peak_mb_us,
                           &m.duration_us,    &m.prompt_tokens,  &m.completion_tokens,
                           &m.batched_calls}) {
      *field = stmt->Int(col++);
    }
    m.batches = std::strtod(stmt->Text(col++).c_str(), nullptr);
    g.max_memory_mb = stmt->Int(col++);
    g.p50_duration_us = stmt->Int(col++);
    g.p99_duration_us = stmt->Int(col++);
    out.push_back(std::move(g));
  }
  // Days sort as text once formatted; the SQL ordered their numbers as text.
  if (by == GroupBy::kDay) {
    std::sort(out.begin(), out.end(), [](const Group& a, const Group& b) { return a.key < b.key; });
  }
  return out;
}

StatusOr<std::map<std::string, int64_t>> Meter::BusiestHours(const std::string& function,
                                                             int64_t from_us, int64_t to_us) {
  THAW_RETURN_IF_ERROR(Flush());
  std::lock_guard<std::mutex> lock(db_mu_);
  auto stmt = db_->Prepare(
      "SELECT function, MAX(busy) FROM (SELECT function, start_us / 3600000000 AS h, "
      "SUM(duration_us) AS busy FROM invocations WHERE (?1 = '' OR function = ?1) "
      "AND start_us >= ?2 AND start_us < ?3 AND status != 'gpu_idle' GROUP BY function, h) hours "
      "GROUP BY function");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, function).Bind(2, from_us).Bind(3, to_us);
  std::map<std::string, int64_t> out;
  for (;;) {
    auto row = stmt->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out[stmt->Text(0)] = stmt->Int(1);
  }
  return out;
}

StatusOr<std::vector<SeriesBucket>> Meter::Series(const std::string& function, int64_t from_us,
                                                  int64_t to_us, int64_t step_us) {
  THAW_RETURN_IF_ERROR(Flush());
  std::lock_guard<std::mutex> lock(db_mu_);
  // Percentiles by nearest rank (rank = ceil(p/100 x n)), as meter::Percentile computes them
  // for GET /v1/usage. gpu_idle and init_error rows are billed time, not invocations.
  auto stmt = db_->Prepare(
      "WITH w AS (SELECT (start_us - ?2) / ?4 AS b, duration_us, status, cold_start, "
      "ROW_NUMBER() OVER (PARTITION BY (start_us - ?2) / ?4 ORDER BY duration_us) AS rn, "
      "COUNT(*) OVER (PARTITION BY (start_us - ?2) / ?4) AS n FROM invocations "
      "WHERE function = ?1 AND start_us >= ?2 AND start_us < ?3 "
      "AND status NOT IN ('gpu_idle', 'init_error', 'template_init')) "
      "SELECT b, COUNT(*), SUM(CASE WHEN status IN ('error', 'timeout', 'crash') THEN 1 ELSE 0 "
      "END), SUM(CASE WHEN status = 'throttled' THEN 1 ELSE 0 END), "
      "SUM(CASE WHEN cold_start != 0 THEN 1 ELSE 0 END), SUM(duration_us), "
      "MAX(CASE WHEN rn = (50 * n + 99) / 100 THEN duration_us END), "
      "MAX(CASE WHEN rn = (99 * n + 99) / 100 THEN duration_us END) "
      "FROM w GROUP BY b ORDER BY b");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, function).Bind(2, from_us).Bind(3, to_us).Bind(4, step_us);
  std::vector<SeriesBucket> out;
  for (;;) {
    auto row = stmt->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out.push_back(SeriesBucket{.index = stmt->Int(0),
                               .calls = stmt->Int(1),
                               .errors = stmt->Int(2),
                               .throttles = stmt->Int(3),
                               .cold_starts = stmt->Int(4),
                               .duration_us = stmt->Int(5),
                               .p50_us = stmt->Int(6),
                               .p99_us = stmt->Int(7)});
  }
  return out;
}

StatusOr<std::vector<StartKindCount>> Meter::StartKinds(const std::string& function,
                                                        int64_t from_us, int64_t to_us,
                                                        int64_t step_us) {
  THAW_RETURN_IF_ERROR(Flush());
  std::lock_guard<std::mutex> lock(db_mu_);
  auto stmt = db_->Prepare(
      "SELECT (start_us - ?2) / ?4 AS b, CASE WHEN cold_start = 0 THEN 'warm' "
      "WHEN start_kind = '' THEN 'full' ELSE start_kind END AS kind, COUNT(*) FROM invocations "
      "WHERE function = ?1 AND start_us >= ?2 AND start_us < ?3 "
      "AND status NOT IN ('gpu_idle', 'init_error', 'template_init', 'throttled') "
      "GROUP BY b, kind ORDER BY b, kind");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, function).Bind(2, from_us).Bind(3, to_us).Bind(4, step_us);
  std::vector<StartKindCount> out;
  for (;;) {
    auto row = stmt->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out.push_back({.index = stmt->Int(0), .kind = stmt->Text(1), .count = stmt->Int(2)});
  }
  return out;
}

StatusOr<std::vector<std::pair<std::string, std::string>>> Meter::RecentVersions(int64_t since_us) {
  THAW_RETURN_IF_ERROR(Flush());
  std::lock_guard<std::mutex> lock(db_mu_);
  auto stmt = db_->Prepare(
      "SELECT DISTINCT function, version FROM invocations WHERE start_us >= ?1 AND "
      "status NOT IN ('template_init', 'usage', 'gpu_idle')");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, since_us);
  std::vector<std::pair<std::string, std::string>> out;
  for (;;) {
    auto row = stmt->Next();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out.emplace_back(stmt->Text(0), stmt->Text(1));
  }
  return out;
}

StatusOr<int64_t> Meter::LastCalled(const std::string& function) {
  THAW_RETURN_IF_ERROR(Flush());
  std::lock_guard<std::mutex> lock(db_mu_);
  auto stmt = db_->Prepare(
      "SELECT MAX(start_us) FROM invocations WHERE function = ?1 "
      "AND status NOT IN ('gpu_idle', 'init_error', 'template_init')");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, function);
  auto row = stmt->Next();
  if (!row.ok()) return row.status();
  return *row ? stmt->Int(0) : 0;
}

}  // namespace thaw::meter
