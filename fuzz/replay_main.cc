// A main for fuzz targets without libFuzzer: runs LLVMFuzzerTestOneInput once on every file named
// on the command line, or found (recursively, in name order) in a directory named there. It is
// what ctest's fuzz.replay.<target> runs over the committed corpus, in every build tree, so that
// an input that once broke an invariant keeps being checked by `make test`.
//
// A target signals a broken invariant by aborting, as it does under libFuzzer; this main only
// adds that an empty corpus is a failure (a wrong path must not pass silently).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

namespace fs = std::filesystem;

bool collect(const fs::path& path, std::vector<fs::path>& files) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const fs::directory_entry& entry : fs::recursive_directory_iterator(path, ec)) {
      if (entry.is_regular_file(ec)) {
        files.push_back(entry.path());
      }
    }
    return !ec;
  }
  if (fs::is_regular_file(path, ec)) {
    files.push_back(path);
    return true;
  }
  return false;
}

bool replay(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return false;
  }
  // A buffer of exactly the input's size, so that ASan sees any read past its end.
  const std::vector<std::uint8_t> data((std::istreambuf_iterator<char>(in)),
                                       std::istreambuf_iterator<char>());
  std::fprintf(stderr, "%s (%zu bytes)\n", file.c_str(), data.size());
  // libFuzzer never passes a null pointer, even for an empty input.
  const std::uint8_t empty = 0;
  static_cast<void>(LLVMFuzzerTestOneInput(data.empty() ? &empty : data.data(), data.size()));
  return true;
}

int run(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE_OR_DIRECTORY...\n", argv[0]);
    return 2;
  }
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    if (!collect(argv[i], files)) {
      std::fprintf(stderr, "cannot read %s\n", argv[i]);
      return 1;
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "no inputs found\n");
    return 1;
  }
  for (const fs::path& file : files) {
    if (!replay(file)) {
      std::fprintf(stderr, "cannot read %s\n", file.c_str());
      return 1;
    }
  }
  std::printf("replayed %zu inputs: no invariant broken\n", files.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "replay failed: %s\n", e.what());
    return 1;
  }
}
