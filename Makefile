# shardlm front door. Every target runs what it needs first.
#   make setup      install Debian packages and npm test assets (idempotent)
#   make build      release build in build/ (CUDA when nvcc is found)
#   make test       build, then run every test through ctest; then the same
#                   tests in the sanitizer build (ASan + UBSan) in build-asan/
#   make test-fast  ctest on the release build only
#   make asan       the sanitizer build and its ctest run only
#   make bench      benchmarks (see benchmarks/README.md)
#   make demo       the end-to-end demo (see README)
#   make clean

JOBS    ?= $(shell nproc)
CUDA    ?= AUTO
BUILD   ?= build
ASAN_BUILD ?= build-asan
CTEST_FLAGS ?= --output-on-failure -j $(JOBS)

.PHONY: all setup build test test-fast asan bench demo clean

all: build

setup:
	@bash scripts/setup.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DSHARDLM_CUDA=$(CUDA)

# CUDA given on the command line (or in the environment) also applies to an
# existing build/: the cache would otherwise keep its first value.
ifneq ($(origin CUDA),file)
CUDA_SYNC = grep -qx 'SHARDLM_CUDA:STRING=$(CUDA)' $(BUILD)/CMakeCache.txt || \
	cmake -S . -B $(BUILD) -DSHARDLM_CUDA=$(CUDA)
else
CUDA_SYNC = true
endif

build: setup $(BUILD)/CMakeCache.txt
	$(CUDA_SYNC)
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSHARDLM_SANITIZE=ON -DSHARDLM_CUDA=OFF

asan: setup $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest $(CTEST_FLAGS) -LE no-asan

test-fast: build
	cd $(BUILD) && ctest $(CTEST_FLAGS)

test: test-fast asan

bench: build
	@if [ -f benchmarks/run.sh ]; then bash benchmarks/run.sh; else echo "no benchmarks yet"; fi

demo: build
	@bash scripts/demo.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
