# thaw: `make run` serves on 127.0.0.1:8080 with the examples deployed; `make test` runs ctest.
BUILD ?= build
JOBS ?= $(shell nproc)
BUILD_TYPE ?= RelWithDebInfo

.PHONY: all deps build test run bench fuzz format clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) > /dev/null
	@cmake --build $(BUILD) -j$(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

run: build
	@scripts/run.sh

bench: build
	@BENCH=1 scripts/deps.sh
	@bench/run.sh

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD)

# Fuzz the bundle unpacker with libFuzzer (Debian's clang) for FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
fuzz:
	@mkdir -p build-fuzz
	clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -Isrc fuzz/archive_fuzz.cc \
	  src/registry/archive.cc src/common/files.cc src/common/status.cc -larchive \
	  -o build-fuzz/archive_fuzz
	@mkdir -p build-fuzz/corpus && cp -n fuzz/corpus/archive/* build-fuzz/corpus/
	build-fuzz/archive_fuzz -max_total_time=$(FUZZ_SECONDS) -timeout=10 build-fuzz/corpus fuzz/corpus/archive
