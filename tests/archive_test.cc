// Unpack and PackDirectory (registry/archive.h). Archives are built here with libarchive so the
// hostile ones (escaping paths and links, device files, bombs) can be crafted entry by entry.
// Each test works in its own mkdtemp folder; `dest` sits inside it, so "nothing was written
// outside dest" is checked as "the temp folder holds nothing but what we put there".
#include "registry/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/files.h"

namespace thaw::registry {
namespace {

namespace fs = std::filesystem;

enum class Format { kTarGz, kZip };

const char* FormatName(Format f) { return f == Format::kTarGz ? "TarGz" : "Zip"; }
void PrintTo(Format f, std::ostream* os) { *os << FormatName(f); }

struct Entry {
  enum class Type { kFile, kDir, kSymlink, kHardlink, kFifo, kCharDevice, kSparseFile };
  Type type = Type::kFile;
  std::string path;
  std::string data;  // file content, or the link target
  int perm = 0644;
  int64_t apparent_size = 0;  // kSparseFile: the file's size; `data` is its last bytes
};

Entry File(std::string path, std::string data, int perm = 0644) {
  return {Entry::Type::kFile, std::move(path), std::move(data), perm};
}
Entry Dir(std::string path) { return {Entry::Type::kDir, std::move(path), "", 0755}; }
Entry Symlink(std::string path, std::string target) {
  return {Entry::Type::kSymlink, std::move(path), std::move(target), 0777};
}
Entry Hardlink(std::string path, std::string target) {
  return {Entry::Type::kHardlink, std::move(path), std::move(target), 0644};
}
Entry Fifo(std::string path) { return {Entry::Type::kFifo, std::move(path), "", 0644}; }
Entry CharDevice(std::string path) { return {Entry::Type::kCharDevice, std::move(path), "", 0666}; }
Entry SparseFile(std::string path, int64_t apparent_size, std::string tail) {
  return {Entry::Type::kSparseFile, std::move(path), std::move(tail), 0644, apparent_size};
}

la_ssize_t AppendToString(archive*, void* ctx, const void* buf, size_t n) {
  static_cast<std::string*>(ctx)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

// Builds an archive in memory. Failures are test failures (ADD_FAILURE), not crashes.
std::string BuildArchive(Format format, const std::vector<Entry>& entries) {
  archive* a = archive_write_new();
  if (format == Format::kTarGz) {
    archive_write_add_filter_gzip(a);
    archive_write_set_format_pax(a);
  } else {
    archive_write_set_format_zip(a);
  }
  std::string out;
  if (archive_write_open(a, &out, nullptr, AppendToString, nullptr) != ARCHIVE_OK) {
    ADD_FAILURE() << "archive_write_open: " << archive_error_string(a);
  }
  for (const Entry& in : entries) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, in.path.c_str());
    archive_entry_set_perm(e, static_cast<mode_t>(in.perm));
    archive_entry_set_mtime(e, 1'700'000'000, 0);
    std::string body;
    switch (in.type) {
      case Entry::Type::kFile:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, static_cast<la_int64_t>(in.data.size()));
        body = in.data;
        break;
      case Entry::Type::kDir:
        archive_entry_set_filetype(e, AE_IFDIR);
        break;
      case Entry::Type::kSymlink:
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_symlink(e, in.data.c_str());
        break;
      case Entry::Type::kHardlink:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_hardlink(e, in.data.c_str());
        archive_entry_set_size(e, 0);
        break;
      case Entry::Type::kFifo:
        archive_entry_set_filetype(e, AE_IFIFO);
        break;
      case Entry::Type::kCharDevice:
        archive_entry_set_filetype(e, AE_IFCHR);
        archive_entry_set_rdevmajor(e, 1);
        archive_entry_set_rdevminor(e, 3);  // /dev/null
        break;
      case Entry::Type::kSparseFile: {
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, in.apparent_size);
        int64_t hole = in.apparent_size - static_cast<int64_t>(in.data.size());
        archive_entry_sparse_add_entry(e, hole, static_cast<la_int64_t>(in.data.size()));
        // The pax writer takes the whole logical content and skips the holes itself.
        body = std::string(static_cast<size_t>(hole), '\0') + in.data;
        break;
      }
    }
    if (archive_write_header(a, e) < ARCHIVE_WARN) {
      ADD_FAILURE() << "archive_write_header(" << in.path << "): " << archive_error_string(a);
    } else if (!body.empty() && archive_write_data(a, body.data(), body.size()) < 0) {
      ADD_FAILURE() << "archive_write_data(" << in.path << "): " << archive_error_string(a);
    }
    archive_entry_free(e);
  }
  if (archive_write_close(a) != ARCHIVE_OK) {
    ADD_FAILURE() << "archive_write_close: " << archive_error_string(a);
  }
  archive_write_free(a);
  return out;
}

// What a folder holds, by relative path: "d" for a folder, "l:TARGET" for a symlink,
// "f:MODE:CONTENT" for a file (MODE is x for executable, - otherwise).
std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    std::string rel = it->path().lexically_relative(dir).generic_string();
    struct stat st;
    if (::lstat(it->path().c_str(), &st) != 0) {
      ADD_FAILURE() << "lstat " << it->path();
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      out[rel] = "d";
    } else if (S_ISLNK(st.st_mode)) {
      out[rel] = "l:" + fs::read_symlink(it->path()).string();
    } else if (S_ISREG(st.st_mode)) {
      std::ifstream f(it->path(), std::ios::binary);
      std::stringstream content;
      content << f.rdbuf();
      out[rel] = std::string("f:") + ((st.st_mode & 0100) ? "x:" : "-:") + content.str();
    } else {
      out[rel] = "other";
    }
  }
  EXPECT_FALSE(ec) << ec.message();
  return out;
}

std::string Describe(const std::map<std::string, std::string>& snap) {
  std::string s;
  for (const auto& [k, v] : snap) s += "  " + k + " = " + v.substr(0, 40) + "\n";
  return s.empty() ? "  (empty)\n" : s;
}

class ArchiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thaw_archive_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    dest_ = root_ + "/dest";
    old_umask_ = ::umask(022);
  }
  void TearDown() override {
    ::umask(old_umask_);
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  // Every refused archive: InvalidArgument, a reason, and nothing left anywhere in root_.
  void ExpectRefused(const Status& st, const std::string& reason) {
    EXPECT_FALSE(st.ok());
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
    EXPECT_NE(st.message().find(reason), std::string::npos) << st.message();
    std::error_code ec;
    EXPECT_FALSE(fs::exists(fs::symlink_status(dest_, ec))) << "dest left behind";
    auto left = Snapshot(root_);
    EXPECT_TRUE(left.empty()) << "left in the temp folder:\n" << Describe(left);
  }

  std::string root_;
  std::string dest_;
  mode_t old_umask_ = 022;
};

// ---------------------------------------------------------------------------------------------
// Hostile archives, in both formats where the format can carry the entry.

struct RefusedCase {
  std::string name;
  std::vector<Format> formats;
  std::vector<Entry> entries;
  UnpackLimits limits;
  std::string reason;  // substring of the error message
};

void PrintTo(const RefusedCase& c, std::ostream* os) { *os << c.name; }

const std::vector<Format> kBoth = {Format::kTarGz, Format::kZip};
const std::vector<Format> kTarOnly = {Format::kTarGz};

// "a/a/.../a": `levels` components of `width` bytes each.
std::string Deep(int levels, size_t width = 1) {
  std::string path;
  for (int i = 0; i < levels; ++i) path += (i ? "/" : "") + std::string(width, 'a');
  return path;
}

std::vector<RefusedCase> RefusedCases() {
  const std::string ten_mb_of_zeros(10 << 20, '\0');
  const std::string half_mb(512 << 10, 'a');
  return {
      {"AbsolutePath",
       kBoth,
       {File("/tmp/thaw_archive_test_abs_escape", "x")},
       {},
       "absolute path"},
      {"DotDotAtStart", kBoth, {File("../x", "x")}, {}, "'..' in path"},
      {"DotDotInMiddle", kBoth, {File("a/../../x", "x")}, {}, "'..' in path"},
      {"DotDotHarmlessLooking", kBoth, {Dir("a/"), File("a/b/../c", "x")}, {}, "'..'"},
      {"DotDotDirectory", kBoth, {Dir("../escape/")}, {}, "'..' in path"},
      {"SymlinkToEtcPasswd",
       kBoth,
       {Symlink("passwd", "/etc/passwd")},
       {},
       "symlink to an absolute path"},
      {"SymlinkTargetEscapes",
       kBoth,
       {Symlink("out", "../../outside")},
       {},
       "'out' refused: symlink"},
      {"SymlinkToExistingFileOutside",
       kBoth,
       {Symlink("passwd", "../../../../../../../../../../etc/passwd")},
       {},
       "points outside the bundle"},
      {"SymlinkToParentOfRoot", kBoth, {Symlink("up", "..")}, {}, "points outside the bundle"},
      {"SymlinkEscapesFromSubfolder",
       kBoth,
       {Dir("a/"), Dir("a/b/"), Symlink("a/b/up", "../../..")},
       {},
       "points outside the bundle"},
      // Each target looks harmless lexically; together they resolve above the root.
      {"SymlinkChainEscapesPhysically",
       kBoth,
       {Symlink("s", "."), Symlink("t", "s/s/../..")},
       {},
       "points outside the bundle"},
      {"SymlinkThroughSymlinkedFolderEscapes",
       kBoth,
       {Dir("a/"), Dir("a/b/"), Symlink("deep", "a/b"), Symlink("t", "deep/../../..")},
       {},
       "points outside the bundle"},
      {"SymlinkLoop", kBoth, {Symlink("a", "b"), Symlink("b", "a")}, {}, "does not exist"},
      {"SymlinkDangling", kBoth, {Symlink("a", "missing")}, {}, "does not exist"},
      {"SymlinkWithoutTarget", kTarOnly, {Symlink("a", "")}, {}, "symlink"},
      // A file written through a symlinked folder that points out of the root.
      {"FileThroughEscapingSymlinkFolderLinkFirst",
       kBoth,
       {Symlink("link", ".."), File("link/pwned", "x")},
       {},
       "refused"},
      {"FileThroughEscapingSymlinkFolderFileFirst",
       kBoth,
       {File("link/pwned", "x"), Symlink("link", "..")},
       {},
       "refused"},
      // Links are created after every file; one created through "up -> .." would land in the
      // temp folder and survive the clean-up of dest.
      {"SymlinkPlantedThroughEscapingSymlinkFolder",
       kBoth,
       {Symlink("up", ".."), Symlink("up/planted", "dest")},
       {},
       "refused"},
      {"SymlinkInsideSymlinkedFolder",
       kBoth,
       {Dir("sub/"), Symlink("link", "sub"), Symlink("link/evil", "../../..")},
       {},
       "refused"},
      {"HardLinkToEtcPasswd",
       kTarOnly,
       {Hardlink("passwd", "/etc/passwd")},
       {},
       "hard links are not allowed"},
      {"HardLinkInsideBundle",
       kTarOnly,
       {File("a", "x"), Hardlink("b", "a")},
       {},
       "hard links are not allowed"},
      {"Fifo", kTarOnly, {Fifo("pipe")}, {}, "only files, folders and symlinks"},
      {"CharDevice", kTarOnly, {CharDevice("null")}, {}, "only files, folders and symlinks"},
      {"DuplicateFile", kBoth, {File("a.txt", "one"), File("a.txt", "two")}, {}, "duplicate entry"},
      {"DuplicateSymlink",
       kBoth,
       {File("t", "x"), Symlink("l", "t"), Symlink("l", "t")},
       {},
       "duplicate entry"},
      {"FileThenFolderSameName", kBoth, {File("a", "x"), File("a/b", "y")}, {}, "non-directory"},
      {"TooManyEntries",
       kBoth,
       {File("1", "x"), File("2", "x"), File("3", "x"), File("4", "x")},
       {.max_entries = 3},
       "more than 3 entries"},
      {"DecompressionBomb",
       kBoth,
       {File("zeros", ten_mb_of_zeros)},
       {.max_bytes = 1 << 20},
       "more than 1048576 bytes"},
      {"ManyFilesOverByteLimit",
       kBoth,
       {File("a", half_mb), File("b", half_mb), File("c", half_mb)},
       {.max_bytes = 1 << 20},
       "more than 1048576 bytes"},
      // Regression: a 300-byte name reached openat and came back as 500 "File name too long".
      {"NameOver255Bytes",
       kBoth,
       {File(std::string(300, 'n'), "x")},
       {},
       "a name longer than 255 bytes"},
      {"FolderNameOver255Bytes",
       kBoth,
       {File(std::string(256, 'd') + "/f", "x")},
       {},
       "a name longer than 255 bytes"},
      // Regression: a 5,000-deep path unpacked, and every later walk of the tree (read-only
      // bits, start-up clean-up) cost memory quadratic in the depth.
      {"PathDeeperThan64Levels", kBoth, {File(Deep(65), "x")}, {}, "deeper than 64 levels"},
      {"FolderDeeperThan64Levels", kBoth, {Dir(Deep(65) + "/")}, {}, "deeper than 64 levels"},
      {"PathLongerThan4096Bytes",
       kBoth,
       {File(Deep(20, 210), "x")},  // 20 levels of 210 bytes
       {},
       "path longer than 4096 bytes"},
      {"SymlinkTargetLongerThan4096Bytes",
       kTarOnly,
       {Symlink("l", Deep(20, 210))},
       {},
       "symlink target longer than 4096 bytes"},
  };
}

class ArchiveRefusedTest : public ArchiveTest, public ::testing::WithParamInterface<RefusedCase> {};

TEST_P(ArchiveRefusedTest, IsRefusedAndLeavesNothing) {
  const RefusedCase& c = GetParam();
  for (Format format : c.formats) {
    SCOPED_TRACE(FormatName(format));
    std::string data = BuildArchive(format, c.entries);
    ASSERT_FALSE(data.empty());
    ExpectRefused(Unpack(data, dest_, c.limits), c.reason);
  }
  EXPECT_FALSE(fs::exists("/tmp/thaw_archive_test_abs_escape"));
}

INSTANTIATE_TEST_SUITE_P(Cases, ArchiveRefusedTest, ::testing::ValuesIn(RefusedCases()),
                         [](const ::testing::TestParamInfo<RefusedCase>& info) {
                           return info.param.name;
                         });

TEST_F(ArchiveTest, GarbageBytesAreNotAnArchive) {
  ExpectRefused(Unpack("this is certainly not a zip file, nor a tarball", dest_, {}),
                "not a valid zip or tar.gz archive");
}

TEST_F(ArchiveTest, ZeroBytesAreNotAnArchive) {
  ExpectRefused(Unpack("", dest_, {}), "not a valid zip or tar.gz archive");
}

// Cut in the middle of a file's data (random bytes, so the cut lands there in the gzip too).
TEST_F(ArchiveTest, TruncatedArchiveIsRefused) {
  std::mt19937 rng(42);
  std::string noise(200'000, '\0');
  for (char& c : noise) c = static_cast<char>(rng());
  for (Format format : kBoth) {
    SCOPED_TRACE(FormatName(format));
    std::string data = BuildArchive(format, {File("noise", noise), File("after", "x")});
    ASSERT_GT(data.size(), noise.size());
    ExpectRefused(Unpack(data.substr(0, data.size() / 2), dest_, {}), "");
  }
}

// Regression: only the data bytes of a sparse entry were counted, so one with a 64 MiB hole
// and 4 KiB of data unpacked to a 64 MiB file under max_bytes = 1 MiB. Sparse entries are now
// refused outright.
TEST_F(ArchiveTest, SparseEntryBeyondMaxBytesIsRefused) {
  std::string data = BuildArchive(
      Format::kTarGz, {SparseFile("sparse", int64_t{64} << 20, std::string(4096, 's'))});
  Status st = Unpack(data, dest_, {.max_bytes = 1 << 20});
  struct stat s;
  if (st.ok() && ::stat((dest_ + "/sparse").c_str(), &s) == 0) {
    ADD_FAILURE() << "unpacked a file of apparent size " << s.st_size
                  << " bytes under max_bytes = 1048576";
    return;
  }
  ExpectRefused(st, "sparse");
}

// A symlinked folder inside the bundle with a file "through" it: refusing is fine, landing
// inside is fine; writing anywhere but dest is not.
TEST_F(ArchiveTest, FileThroughInBundleSymlinkFolderStaysInside) {
  for (Format format : kBoth) {
    SCOPED_TRACE(FormatName(format));
    std::string data =
        BuildArchive(format, {Dir("sub/"), Symlink("link", "sub"), File("link/file", "x")});
    Status st = Unpack(data, dest_, {});
    if (!st.ok()) {
      ExpectRefused(st, "refused");
      continue;
    }
    auto snap = Snapshot(dest_);
    bool landed = snap.count("sub/file") == 1 || snap.count("link/file") == 1;
    EXPECT_TRUE(landed) << Describe(snap);
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root_, ec)) {
      EXPECT_EQ(e.path().string(), dest_) << "written outside dest";
    }
    fs::remove_all(dest_, ec);
  }
}

// Regression: a bomb spread over many entries (each under the limit, together over it) wrote
// up to max_bytes to disk before it was refused. The declared sizes are now summed first, before
// anything is created: here `dest`'s parent does not exist, so any write would fail instead.
TEST_F(ArchiveTest, BombOverManyEntriesIsRefusedBeforeAnythingIsCreated) {
  std::vector<Entry> entries;
  for (int i = 0; i < 120; ++i)
    entries.push_back(File("zeros" + std::to_string(i), std::string(16 << 10, '\0')));
  for (Format format : kBoth) {
    SCOPED_TRACE(FormatName(format));
    Status st =
        Unpack(BuildArchive(format, entries), root_ + "/missing/dest", {.max_bytes = 1 << 20});
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
    EXPECT_NE(st.message().find("more than 1048576 bytes"), std::string::npos) << st.message();
  }
}

// So is every other refusal a header can show, however late in the archive it comes.
TEST_F(ArchiveTest, LateBadEntryIsRefusedBeforeAnythingIsCreated) {
  for (Format format : kBoth) {
    SCOPED_TRACE(FormatName(format));
    std::string data = BuildArchive(format, {File("ok", "x"), File(Deep(65), "x")});
    Status st = Unpack(data, root_ + "/missing/dest", {});
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  }
}

TEST_F(ArchiveTest, ExistingDestinationIsRefusedAndKept) {
  ASSERT_EQ(::mkdir(dest_.c_str(), 0755), 0);
  std::ofstream(dest_ + "/keep") << "precious";
  Status st = Unpack(BuildArchive(Format::kTarGz, {File("a", "x")}), dest_, {});
  EXPECT_FALSE(st.ok());
  EXPECT_TRUE(fs::exists(dest_ + "/keep")) << "Unpack removed a folder it did not create";
  EXPECT_FALSE(fs::exists(dest_ + "/a"));
}

// ---------------------------------------------------------------------------------------------
// Valid archives.

class ArchiveFormatTest : public ArchiveTest, public ::testing::WithParamInterface<Format> {};

TEST_P(ArchiveFormatTest, NestedFoldersExecBitAndRelativeSymlink) {
  std::string data =
      BuildArchive(GetParam(), {
                                   File("thaw.yaml", "runtime: provided\n"),
                                   File("bootstrap", "#!/bin/sh\necho hi\n", 0755),
                                   Dir("lib/"),
                                   Dir("lib/v1/"),
                                   File("lib/v1/data.txt", "payload"),
                                   File("deep/er/still/file.bin", std::string("\0\1\2\3", 4)),
                                   File("./dot/slash.txt", "dot"),
                                   Symlink("lib/current", "v1"),
                                   Symlink("data-link", "lib/current/data.txt"),
                                   Symlink("self", "."),
                               });
  Status st = Unpack(data, dest_, {});
  ASSERT_TRUE(st.ok()) << st.ToString();

  std::map<std::string, std::string> want = {
      {"thaw.yaml", "f:-:runtime: provided\n"},
      {"bootstrap", "f:x:#!/bin/sh\necho hi\n"},
      {"lib", "d"},
      {"lib/v1", "d"},
      {"lib/v1/data.txt", "f:-:payload"},
      {"lib/current", "l:v1"},
      {"deep", "d"},
      {"deep/er", "d"},
      {"deep/er/still", "d"},
      {"deep/er/still/file.bin", std::string("f:-:\0\1\2\3", 8)},
      {"dot", "d"},
      {"dot/slash.txt", "f:-:dot"},
      {"data-link", "l:lib/current/data.txt"},
      {"self", "l:."},
  };
  EXPECT_EQ(Snapshot(dest_), want);

  struct stat s;
  ASSERT_EQ(::stat((dest_ + "/bootstrap").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 0755u);
  ASSERT_EQ(::stat((dest_ + "/thaw.yaml").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 0644u);
  std::ifstream through(dest_ + "/data-link");
  std::string content((std::istreambuf_iterator<char>(through)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "payload");
}

TEST_P(ArchiveFormatTest, EntryCountAndByteLimitsAreInclusive) {
  std::string data = BuildArchive(
      GetParam(), {File("a", std::string(600, 'a')), File("b", std::string(424, 'b'))});
  Status st = Unpack(data, dest_, {.max_bytes = 1024, .max_entries = 2});
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(fs::file_size(dest_ + "/a") + fs::file_size(dest_ + "/b"), 1024u);
}

TEST_P(ArchiveFormatTest, PathLimitsAreInclusive) {
  // 64 levels, a 4,096-byte path (17 levels of 240 bytes), a 255-byte name.
  const std::string long_path = Deep(17, 240);
  ASSERT_EQ(long_path.size(), 4096u);
  std::string data = BuildArchive(GetParam(), {File(Deep(64), "deep"), File(long_path, "long"),
                                               File(std::string(255, 'n'), "n")});
  Status st = Unpack(data, dest_, {});
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(fs::exists(dest_ + "/" + Deep(64)));
  EXPECT_TRUE(fs::exists(dest_ + "/" + std::string(255, 'n')));
  // dest_ + long_path is past PATH_MAX: RemoveTree works one folder at a time.
  Status removed = RemoveTree(dest_);
  EXPECT_TRUE(removed.ok()) << removed.ToString();
  EXPECT_FALSE(fs::exists(dest_));
}

TEST_P(ArchiveFormatTest, SetuidAndWriteBitsAreNotCarriedOver) {
  std::string data = BuildArchive(GetParam(), {File("suid", "x", 04777), File("ro", "y", 0400)});
  Status st = Unpack(data, dest_, {});
  ASSERT_TRUE(st.ok()) << st.ToString();
  struct stat s;
  ASSERT_EQ(::stat((dest_ + "/suid").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 0755u);
  ASSERT_EQ(::stat((dest_ + "/ro").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 0644u);
}

TEST_P(ArchiveFormatTest, EmptyArchiveUnpacksToEmptyFolder) {
  // No entries is not hostile: the registry then refuses the bundle for lacking thaw.yaml.
  std::string data = BuildArchive(GetParam(), {});
  Status st = Unpack(data, dest_, {});
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(fs::is_directory(dest_));
  EXPECT_TRUE(Snapshot(dest_).empty());
}

INSTANTIATE_TEST_SUITE_P(Formats, ArchiveFormatTest,
                         ::testing::Values(Format::kTarGz, Format::kZip),
                         [](const ::testing::TestParamInfo<Format>& info) {
                           return std::string(FormatName(info.param));
                         });

// ---------------------------------------------------------------------------------------------
// PackDirectory -> Unpack.

void WriteFile(const std::string& path, const std::string& content, mode_t mode = 0644) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << content;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
}

TEST_F(ArchiveTest, PackDirectoryRoundTrip) {
  const std::string src = root_ + "/src";
  WriteFile(src + "/thaw.yaml", "runtime: provided\n");
  WriteFile(src + "/bootstrap", "#!/bin/sh\n", 0755);
  WriteFile(src + "/empty", "");
  WriteFile(src + "/a/b/c/deep.txt", std::string(100'000, 'z'));
  WriteFile(src + "/bin.dat", std::string("\0\xff\0\x7f", 4));
  fs::create_directories(src + "/empty-folder");

  auto packed = PackDirectory(src);
  ASSERT_TRUE(packed.ok()) << packed.status().ToString();
  Status st = Unpack(*packed, dest_, {});
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(Snapshot(dest_), Snapshot(src));
  EXPECT_EQ(Snapshot(dest_).size(), 9u);
}

// Regression: PackDirectory named entries with fs::relative(), which resolves symlinks, so a
// symlink "current -> v1" was stored as a second entry named "v1" and the bundle was refused
// (or, for a link to a file, the file itself was replaced by a link to itself).
TEST_F(ArchiveTest, PackDirectoryStoresSymlinkUnderItsOwnName) {
  const std::string src = root_ + "/src";
  WriteFile(src + "/v1/lib.py", "x = 1\n");
  WriteFile(src + "/main.py", "print(1)\n");
  fs::create_directory_symlink("v1", src + "/current");
  fs::create_symlink("main.py", src + "/entry.py");

  auto packed = PackDirectory(src);
  ASSERT_TRUE(packed.ok()) << packed.status().ToString();
  Status st = Unpack(*packed, dest_, {});
  ASSERT_TRUE(st.ok()) << st.ToString();
  std::map<std::string, std::string> want = {
      {"v1", "d"},         {"v1/lib.py", "f:-:x = 1\n"}, {"main.py", "f:-:print(1)\n"},
      {"current", "l:v1"}, {"entry.py", "l:main.py"},
  };
  EXPECT_EQ(Snapshot(dest_), want);
}

TEST_F(ArchiveTest, PackDirectoryOfMissingFolderIsAnError) {
  auto packed = PackDirectory(root_ + "/missing");
  EXPECT_FALSE(packed.ok());
  EXPECT_EQ(packed.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(ArchiveTest, PackDirectoryRefusesFifo) {
  const std::string src = root_ + "/src";
  fs::create_directories(src);
  ASSERT_EQ(::mkfifo((src + "/pipe").c_str(), 0644), 0);
  auto packed = PackDirectory(src);
  EXPECT_FALSE(packed.ok());
  EXPECT_EQ(packed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(packed.status().message().find("pipe"), std::string::npos) << packed.status().message();
}

}  // namespace
}  // namespace thaw::registry

namespace thaw::registry {
namespace {

// Regression: a zip whose failure libarchive reports without a message made Unpack build a
// std::string from a null pointer and crash (found by `make fuzz`).
TEST(ArchiveRegressionTest, NullErrorStringIsRefusedNotACrash) {
  auto data =
      ReadFile(std::string(THAW_SOURCE_DIR) + "/fuzz/corpus/archive/regression-null-error-string");
  ASSERT_TRUE(data.ok());
  char tmpl[] = "/tmp/thaw-archive-regression-XXXXXX";
  std::string base = ::mkdtemp(tmpl);
  Status st = Unpack(*data, base + "/out", {1 << 20, 64});
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  EXPECT_FALSE(PathExists(base + "/out"));
  (void)RemoveTree(base);
}

}  // namespace
}  // namespace thaw::registry
