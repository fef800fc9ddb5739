# Entry points: make demo | test | asan | fuzz | clean.
# Each first installs missing Debian packages (scripts/install-deps.sh), then
# configures and builds its own directory: build/, build-asan/, build-fuzz/.
#   make test WERROR=ON          warnings as errors (CI does this)
#   make fuzz FUZZ_SECONDS=60    seconds per fuzz target
#   make test CMAKE_ARGS=-D...   extra configure options

MAKEFLAGS    += --no-print-directory
JOBS         ?= 2
FUZZ_SECONDS ?= 30
WERROR       ?= OFF
CMAKE_ARGS   ?=
CONFIGURE     = cmake -S . -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTDSL_WERROR=$(WERROR) $(CMAKE_ARGS)
# Sanitizer builds: -O1 as ASan advises, and without -DNDEBUG so assert() checks too.
SAN_FLAGS     = -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g"

# One libFuzzer target per tests/fuzz/fuzz_<name>.c; its seeds are tests/fuzz/corpus_<name>/.
FUZZERS := $(basename $(notdir $(wildcard tests/fuzz/fuzz_*.c)))

.PHONY: all deps build demo test asan fuzz clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	$(CONFIGURE) -B build
	cmake --build build -j$(JOBS)

demo: build
	@if [ -f samples/lessons/run.sh ]; then \
	  echo "bash samples/lessons/run.sh build/tdslc"; \
	  bash samples/lessons/run.sh build/tdslc; \
	else \
	  echo "demo: samples/lessons/run.sh is not written yet; tdslc is at build/tdslc"; \
	fi
	@echo "build/samples/digits/digits --out build/samples/digits/digits.safetensors"
	@build/samples/digits/digits --out build/samples/digits/digits.safetensors

test: build
	ctest --test-dir build --output-on-failure

asan: deps
	$(CONFIGURE) -B build-asan $(SAN_FLAGS) -DTDSL_SANITIZE=ON
	cmake --build build-asan -j$(JOBS)
	UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build-asan --output-on-failure

# Runs each fuzz target on a temporary copy of its corpus (the repo's stays as
# committed); crash reproducers go to build-fuzz/artifacts/.
fuzz: deps
	@test -n "$(FUZZERS)" || { echo "fuzz: no tests/fuzz/fuzz_*.c"; exit 1; }
	$(CONFIGURE) -B build-fuzz $(SAN_FLAGS) -DTDSL_FUZZ=ON -DCMAKE_C_COMPILER=clang
	cmake --build build-fuzz -j$(JOBS) --target fuzzers
	@mkdir -p build-fuzz/artifacts
	@for f in $(FUZZERS); do \
	  seeds=tests/fuzz/corpus_$${f#fuzz_}; corpus=$$(mktemp -d); \
	  if [ -d $$seeds ]; then cp -R $$seeds/. $$corpus/; else echo "fuzz: no $$seeds/, starting empty"; fi; \
	  echo "build-fuzz/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -timeout=10 $$seeds (copy)"; \
	  build-fuzz/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
	    -artifact_prefix=build-fuzz/artifacts/$$f- $$corpus; rc=$$?; \
	  rm -rf $$corpus; \
	  if [ $$rc -ne 0 ]; then echo "fuzz: $$f FAILED (rc $$rc); reproducer in build-fuzz/artifacts/"; exit 1; fi; \
	done

clean:
	rm -rf build build-asan build-fuzz
